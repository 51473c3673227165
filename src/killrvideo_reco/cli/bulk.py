"""``kv-reco ingest FILE``: read (videoId, vector) pairs, send them, resume after a stop.

Inputs: JSONL (one ``{"videoId": …, "vector": […]}`` per line), Parquet (columns
``videoId`` and ``vector``), or ``.npy`` (a 2-D float array) with ``--ids`` (one
videoId per line, same order).

The checkpoint counts the records whose batches have all finished, in input
order; batches finish out of order, so only the contiguous prefix counts. A
resumed run skips that prefix and sends the rest: a batch that was in flight at
the stop is sent again, which is harmless because ingest is idempotent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..client import AsyncRecoClient, Item, ItemResult, Summary
from ..domain.ingest import parse_video_id
from ..domain.vectors import VectorSpec, pack_vector
from ..errors import RecoError


def count_records(path: Path, ids: Path | None) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def read_items(path: Path, ids: Path | None = None) -> Iterator[Item]:
    """Stream the file's records in order, without loading it whole."""
    if path.suffix == ".parquet":
        yield from _read_parquet(path)
    elif path.suffix == ".npy":
        if ids is None:
            raise ValueError("a .npy file needs --ids FILE, one videoId per line")
        yield from _read_npy(path, ids)
    else:
        yield from _read_jsonl(path)


def _read_jsonl(path: Path) -> Iterator[Item]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield Item(str(record["videoId"]), record["vector"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}:{number}: expected {{'videoId': …, 'vector': […]}}: {exc}"
                ) from None


def _read_parquet(path: Path) -> Iterator[Item]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    for batch in table.iter_batches(columns=["videoId", "vector"], batch_size=1024):
        ids = batch.column("videoId").to_pylist()
        vectors = batch.column("vector").to_pylist()
        for video_id, vector in zip(ids, vectors, strict=True):
            yield Item(str(video_id), vector)


def _read_npy(path: Path, ids: Path) -> Iterator[Item]:
    vectors = np.load(path, mmap_mode="r")
    if vectors.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array (videos x dimension), got {vectors.shape}")
    with ids.open() as names:
        video_ids = [line.strip() for line in names if line.strip()]
    if len(video_ids) != vectors.shape[0]:
        raise ValueError(f"{ids} has {len(video_ids)} ids but {path} has {vectors.shape[0]} rows")
    for video_id, vector in zip(video_ids, vectors, strict=True):
        yield Item(video_id, vector)


def check_item(item: Item, spec: VectorSpec) -> ItemResult | None:
    """What the server would refuse in this item, found locally (``--dry-run``)."""
    try:
        parse_video_id(item.video_id)
        values = np.asarray(item.vector, dtype=np.float64)
        if values.ndim != 1:
            return ItemResult(item.video_id, 422, "vector must be a flat array of numbers")
        pack_vector(values.tolist(), spec)
    except RecoError as exc:
        return ItemResult(item.video_id, exc.status_code, exc.message)
    except (TypeError, ValueError) as exc:
        return ItemResult(item.video_id, 422, f"vector must be numbers: {exc}")
    return None


@dataclass
class Checkpoint:
    """Progress of one input file, saved atomically after every batch."""

    input: str
    size: int
    done: int = 0  # records at the head of the file whose batches all finished
    accepted: int = 0
    failed: int = 0

    @classmethod
    def load_or_new(cls, path: Path, input_path: Path) -> Checkpoint:
        size = input_path.stat().st_size
        if path.exists():
            saved = cls(**json.loads(path.read_text()))
            if saved.input == str(input_path.resolve()) and saved.size == size:
                return saved
            # Another file, or this one changed: its old progress means nothing.
        return cls(input=str(input_path.resolve()), size=size)

    def save(self, path: Path) -> None:
        scratch = path.with_name(path.name + ".tmp")
        scratch.write_text(json.dumps(asdict(self)))
        os.replace(scratch, path)


class Progress:
    """Tracks which batches finished and advances the checkpoint's contiguous prefix."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._finished: dict[int, tuple[int, int, int]] = {}
        self._next = 0

    def finished(self, number: int, results: list[ItemResult]) -> None:
        accepted = sum(r.accepted for r in results)
        self._finished[number] = (len(results), accepted, len(results) - accepted)
        while self._next in self._finished:
            count, ok, bad = self._finished.pop(self._next)
            self.checkpoint.done += count
            self.checkpoint.accepted += ok
            self.checkpoint.failed += bad
            self._next += 1


def skip(items: Iterator[Item], count: int) -> Iterator[Item]:
    return islice(items, count, None)


def failure_line(result: ItemResult) -> str:
    record: dict[str, Any] = {"videoId": result.video_id, "code": result.code}
    record["message"] = result.message
    return json.dumps(record)


@dataclass(frozen=True)
class Options:
    batch_size: int
    concurrency: int
    write_timestamp_us: int | None


async def send_file(
    client: AsyncRecoClient,
    file: Path,
    ids: Path | None,
    state: Checkpoint,
    checkpoint: Path,
    failed_file: Path,
    total: int,
    options: Options,
) -> Summary:
    """Send what the checkpoint says is left; save progress after every batch."""
    from tqdm import tqdm

    progress = Progress(state)
    bar = tqdm(total=total, initial=state.done, unit="vec", desc="ingest", dynamic_ncols=True)

    def on_batch(number: int, results: list[ItemResult]) -> None:
        with failed_file.open("a") as out:
            out.writelines(failure_line(r) + "\n" for r in results if not r.accepted)
        progress.finished(number, results)
        state.save(checkpoint)
        bar.update(len(results))

    try:
        async with client:
            return await client.ingest_many(
                skip(read_items(file, ids), state.done),
                batch_size=options.batch_size,
                concurrency=options.concurrency,
                write_timestamp_us=options.write_timestamp_us,
                on_batch=on_batch,
            )
    finally:
        bar.close()
        state.save(checkpoint)
