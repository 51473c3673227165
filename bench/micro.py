"""CPU cost per 1536-dim vector of each stage of the hot path, with baselines.

    python bench/micro.py

Stages: decode (msgspec typed decode of the whole 32 KB body), validate + pack
(float32 bounds, zero/norm rules, big-endian bytes), the duplicate-key check,
and the whole decode_ingest.
Baselines in the same run: stdlib json.loads, pydantic model_validate_json of a
list[float] body, and the driver's own VectorType.serialize. Ratios, not
absolute times, are what compare across machines.

Then the per-request layer (api/front.py: request id, one JSON log line,
latency histogram) around an app that answers at once, against that app alone,
as a share of decode_ingest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import timeit
import uuid
from collections.abc import Callable

import numpy as np
from cassandra.cqltypes import lookup_casstype
from pydantic import BaseModel

from _results import table, write_summary
from killrvideo_reco import logs
from killrvideo_reco.api.front import Drain, Front
from killrvideo_reco.domain.ingest import _check_no_duplicate_keys, _decoder, decode_ingest
from killrvideo_reco.domain.vectors import Similarity, VectorSpec, pack_vector

DIM = 1536


class PydanticBody(BaseModel):
    videoId: uuid.UUID
    vector: list[float]


def per_call_us(fn: Callable[[], object], number: int = 2000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    rng = np.random.default_rng(7)
    unit = rng.standard_normal(DIM)
    unit /= np.linalg.norm(unit)
    vector = unit.astype(np.float32).tolist()
    body = json.dumps({"videoId": str(uuid.uuid4()), "vector": vector}).encode()
    parsed = _decoder.decode(body)
    driver_type = lookup_casstype(
        f"org.apache.cassandra.db.marshal.VectorType(org.apache.cassandra.db.marshal.FloatType, {DIM})"
    )
    rows: list[tuple[str, float]] = []
    for name, spec in (
        ("cosine", VectorSpec(DIM, Similarity.COSINE)),
        ("dot_product", VectorSpec(DIM, Similarity.DOT_PRODUCT)),
    ):
        rows.append(
            (
                f"validate+pack ({name})",
                per_call_us(lambda spec=spec: pack_vector(parsed.vector, spec)),
            )
        )  # type: ignore[misc]
    cosine = VectorSpec(DIM, Similarity.COSINE)
    b64_body = json.dumps(
        {
            "videoId": str(uuid.uuid4()),
            "vector": base64.b64encode(unit.astype("<f4").tobytes()).decode(),
        }
    ).encode()
    rows = [
        ("decode (msgspec, typed)", per_call_us(lambda: _decoder.decode(body))),
        *rows,
        # The refusal of repeated keys (a count of quote bytes), alone.
        ("duplicate-key check", per_call_us(lambda: _check_no_duplicate_keys(body, parsed))),
        ("decode_ingest, all stages", per_call_us(lambda: decode_ingest(body, cosine))),
        ("decode_ingest, base64 body", per_call_us(lambda: decode_ingest(b64_body, cosine))),
    ]
    baselines = [
        ("json.loads (stdlib)", per_call_us(lambda: json.loads(body), 300)),
        (
            "pydantic model_validate_json",
            per_call_us(lambda: PydanticBody.model_validate_json(body), 500),
        ),
        ("driver VectorType.serialize", per_call_us(lambda: driver_type.serialize(vector, 5), 500)),
    ]
    print(f"CPU per {DIM}-dim vector, {len(body)} byte body (best of 7)")
    for name, us in rows + baselines:
        print(f"  {name:<32}{us:8.1f} µs")
    total = dict(rows)["decode_ingest, all stages"]
    naive = (
        dict(baselines)["pydantic model_validate_json"]
        + dict(baselines)["driver VectorType.serialize"]
    )
    print(f"  ratio decode_ingest / (pydantic decode + driver serialize) = {total / naive:.2f}x")
    print(
        f"  ratio msgspec decode / json.loads = {dict(rows)['decode (msgspec, typed)'] / dict(baselines)['json.loads (stdlib)']:.2f}x"
    )
    bare, fronted = front_cost()
    print("Per request: api/front.py (id, JSON log line to /dev/null, histogram)")
    print(f"  {'app alone':<32}{bare:8.1f} µs")
    print(f"  {'app behind Front':<32}{fronted:8.1f} µs")
    print(f"  ratio Front's cost / decode_ingest = {(fronted - bare) / total:.2f}x")
    write_summary(
        "micro",
        title=f"CPU per {DIM}-dim vector of each stage of the hot path, idle machine",
        tables=[
            table(["stage", "µs per call (best of 7)"], rows, title="the hot path"),
            table(["baseline", "µs per call (best of 7)"], baselines, title="baselines"),
            table(
                ["per request", "µs"],
                [["app alone", bare], ["app behind Front (id, log line, histogram)", fronted]],
                title="api/front.py",
            ),
        ],
        notes=[
            f"{len(body)} byte body",
            f"decode_ingest / (pydantic decode + driver serialize) = {total / naive:.2f}x",
            f"Front's cost / decode_ingest = {(fronted - bare) / total:.2f}x",
        ],
    )


def front_cost(number: int = 20000) -> tuple[float, float]:
    """µs per request of an app that answers 202 at once, alone and behind Front."""
    logs.configure(level="INFO", fmt="json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    front = Front(app, drain=Drain(), retry_after_s=1)  # type: ignore[arg-type]
    headers = [
        (b"host", b"kv"),
        (b"authorization", b"Bearer x"),
        (b"content-type", b"application/json"),
    ]

    async def nothing(message: object) -> None:
        pass

    async def run(target: object) -> float:
        best = float("inf")
        for _ in range(5):
            started = timeit.default_timer()
            for _ in range(number):
                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/api/v1/reco/ingest",
                    "headers": headers,
                }
                await target(scope, None, nothing)  # type: ignore[operator]
            best = min(best, timeit.default_timer() - started)
        return best / number * 1e6

    return asyncio.run(run(app)), asyncio.run(run(front))


if __name__ == "__main__":
    main()
