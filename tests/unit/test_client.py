"""The client's retry rules, against a scripted HTTP transport (no database involved)."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from killrvideo_reco.client import AsyncRecoClient, Item, RequestFailed

IDS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(4)]


def scripted(*answers: object) -> tuple[httpx.MockTransport, list[dict[str, object]]]:
    """Answer each request with the next scripted answer; record the bodies."""
    sent: list[dict[str, object]] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, httpx.Response)
        return answer

    return httpx.MockTransport(handle), sent


def results(*codes: int, ids: list[str]) -> httpx.Response:
    items = [
        {
            "videoId": vid,
            "status": "accepted" if c == 202 else "failed",
            "code": c,
            "message": str(c),
        }
        for vid, c in zip(ids, codes, strict=True)
    ]
    return httpx.Response(200, json={"status": "completed", "items": items})


def client(transport: httpx.MockTransport) -> AsyncRecoClient:
    return AsyncRecoClient("http://reco", "t", transport=transport, backoff_s=0.001, attempts=4)


ITEMS = [Item(vid, [float(i)] * 3) for i, vid in enumerate(IDS)]


async def test_items_that_got_503_are_sent_again_alone() -> None:
    transport, sent = scripted(
        results(202, 503, 404, 503, ids=IDS),
        results(202, 503, ids=[IDS[1], IDS[3]]),
        results(202, ids=[IDS[3]]),
    )
    async with client(transport) as reco:
        got = await reco.ingest_batch(ITEMS)
        assert [r.code for r in got] == [202, 202, 404, 202]
        assert reco.retried == 3
    assert [[i["videoId"] for i in body["items"]] for body in sent] == [  # type: ignore[union-attr]
        IDS,
        [IDS[1], IDS[3]],
        [IDS[3]],
    ]


async def test_whole_request_503_and_timeouts_are_retried() -> None:
    transport, sent = scripted(
        httpx.Response(503, json={"status": "failed", "message": "busy"}),
        httpx.ReadTimeout("slow"),
        results(202, 202, 202, 202, ids=IDS),
    )
    async with client(transport) as reco:
        got = await reco.ingest_batch(ITEMS, write_timestamp_us=123)
    assert all(r.accepted for r in got) and len(sent) == 3
    assert all(body["writeTimestamp"] == 123 for body in sent)
    # The vectors travel as base64 little-endian float32.
    vector = base64.b64decode(sent[0]["items"][1]["vector"])  # type: ignore[index]
    assert np.frombuffer(vector, "<f4").tolist() == [1.0, 1.0, 1.0]


async def test_out_of_attempts_the_items_are_reported_503() -> None:
    transport, sent = scripted(*[httpx.Response(503, json={"message": "busy"})] * 4)
    async with client(transport) as reco:
        got = await reco.ingest_batch(ITEMS)
    assert [r.code for r in got] == [503] * 4 and len(sent) == 4
    assert "busy" in got[0].message


async def test_a_refused_request_is_not_retried() -> None:
    transport, sent = scripted(httpx.Response(401, json={"status": "failed", "message": "expired"}))
    async with client(transport) as reco:
        with pytest.raises(RequestFailed, match="401: expired"):
            await reco.ingest_batch(ITEMS)
    assert len(sent) == 1


async def test_ingest_many_batches_in_order_and_sums_up() -> None:
    answers = [results(202, 202, ids=IDS[:2]), results(404, 202, ids=IDS[2:])]
    transport, _sent = scripted(*answers)
    seen: list[int] = []
    async with client(transport) as reco:
        summary = await reco.ingest_many(
            ITEMS, batch_size=2, concurrency=1, on_batch=lambda n, _r: seen.append(n)
        )
    assert (summary.accepted, dict(summary.failed), summary.retried) == (3, {404: 1}, 0)
    assert seen == [0, 1] and [f.video_id for f in summary.failures] == [IDS[2]]
