"""The pipeline commands: ingest a file of vectors, embed videos, load the catalogue's vectors.

They speak to the service over HTTP (``killrvideo_reco.client``), so every
vector meets the same validation as a pipeline's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import RecoError
from ._common import TokenOpt, UrlOpt, api_token, api_url, fail, get_settings, needs_extras

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..client import ServerSchema, Summary
    from ..domain.videos import Video


def ingest(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help=".jsonl, .parquet or .npy")
    ],
    ids: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="videoIds for a .npy file")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Items per request")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight")] = 4,
    write_timestamp: Annotated[
        int | None,
        typer.Option(help="USING TIMESTAMP in µs, e.g. when these vectors were computed"),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="[default: FILE.checkpoint]; delete it to start over")
    ] = None,
    failed_file: Annotated[
        Path | None, typer.Option(help="Failed ids as JSONL [default: FILE.failed.jsonl]")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate against the server's schema; send nothing")
    ] = False,
) -> None:
    """Send (videoId, vector) pairs through the batch endpoint; resumable."""
    import asyncio

    from ..client import AsyncRecoClient, RequestFailed
    from . import bulk

    settings = get_settings()
    checkpoint = checkpoint or file.with_name(file.name + ".checkpoint")
    failed_file = failed_file or file.with_name(file.name + ".failed.jsonl")
    try:
        total = bulk.count_records(file, ids)
        if dry_run:
            raise typer.Exit(
                _dry_run(file, ids, api_url(settings, url), api_token(settings, token), total)
            )
        state = bulk.Checkpoint.load_or_new(checkpoint, file)
        if state.done:
            typer.echo(f"resuming after {state.done} of {total} records ({checkpoint})", err=True)
        else:
            failed_file.unlink(missing_ok=True)
        options = bulk.Options(batch_size, concurrency, write_timestamp)
        client = AsyncRecoClient(api_url(settings, url), api_token(settings, token))
        summary = asyncio.run(
            bulk.send_file(client, file, ids, state, checkpoint, failed_file, total, options)
        )
    except RequestFailed as exc:
        fail(f"the server refused the request ({exc.status_code}): {exc.message}")
    except KeyboardInterrupt:
        fail(f"interrupted after {state.done} records; run the same command to resume", 130)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(
        f"accepted {state.accepted}, failed {state.failed}"
        + "".join(f", {n} x {code}" for code, n in sorted(summary.failed.items()))
        + f", retried {summary.retried} (this run: {summary.accepted} accepted)",
        err=True,
    )
    if state.failed:
        typer.echo(f"failed ids: {failed_file}", err=True)
        raise typer.Exit(1)
    checkpoint.unlink(missing_ok=True)  # finished: a new run starts over


def _dry_run(file: Path, ids: Path | None, url: str, token: str, total: int) -> int:
    from tqdm import tqdm

    from . import bulk

    spec = _server_schema(url, token).spec
    bad = 0
    for item in tqdm(bulk.read_items(file, ids), total=total, unit="vec", desc="check"):
        problem = bulk.check_item(item, spec)
        if problem is not None:
            bad += 1
            if bad <= 20:
                typer.echo(f"{problem.video_id}: {problem.code} {problem.message}", err=True)
    typer.echo(
        f"{total - bad} of {total} records valid for {spec.cql_type} "
        f"({spec.similarity.value}); nothing was sent",
        err=True,
    )
    return 1 if bad else 0


def _server_schema(url: str, token: str) -> ServerSchema:
    """The column, dimension and similarity the service writes, from its /readyz."""
    from ..client import RecoClient, RequestFailed

    try:
        with RecoClient(url, token) as client:
            return client.schema()
    except RequestFailed as exc:
        fail(f"the service is not ready ({exc.status_code}): {exc.message}")


def embed(
    missing_only: Annotated[
        bool, typer.Option("--missing-only", help="Only videos without a vector yet")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Videos per request")] = 128,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight")] = 2,
) -> None:
    """Embed videos' name, description and tags with all-MiniLM-L6-v2; send them to the API."""
    import asyncio
    from itertools import islice

    from tqdm import tqdm

    from ..client import AsyncRecoClient, Item, RequestFailed
    from ..domain.videos import embedding_text
    from ..embedding import MODEL_NAME, Embedder, model_dimension
    from ..storage import CassandraStore

    settings = get_settings()
    base_url, bearer = api_url(settings, url), api_token(settings, token)
    server = _server_schema(base_url, bearer)
    dimension = model_dimension()
    if dimension != server.spec.dimension:
        fail(
            f"{MODEL_NAME} makes {dimension}-dim vectors, but the service at {base_url} "
            f"writes {server.column} {server.spec.cql_type}; nothing was done. Move to a "
            f"{dimension}-dim column first (docs/pipelines/migration.md)",
            2,
        )
    embedder = Embedder(cache_dir=settings.cache_dir)
    store = CassandraStore.open(settings.model_copy(update={"vector_column": server.column}))
    bar = tqdm(unit="video", desc="embed", dynamic_ncols=True)

    def items() -> Iterator[Item]:
        videos = store.videos.scan(only_missing=missing_only)
        while chunk := list(islice(videos, batch_size)):
            vectors = embedder.encode([embedding_text(v) for v in chunk])
            yield from (Item(str(v.videoid), x) for v, x in zip(chunk, vectors, strict=True))

    async def send() -> Summary:
        async with AsyncRecoClient(base_url, bearer) as client:
            return await client.ingest_many(
                items(),
                batch_size=batch_size,
                concurrency=concurrency,
                on_batch=lambda _n, results: bar.update(len(results)),
            )

    try:
        summary = asyncio.run(send())
    except RequestFailed as exc:
        fail(f"the server refused the request ({exc.status_code}): {exc.message}")
    except RecoError as exc:
        fail(exc.message)
    finally:
        bar.close()
        store.close()
    typer.echo(
        f"embedded and sent {summary.accepted + summary.total_failed} videos: accepted "
        f"{summary.accepted}, failed {summary.total_failed}, retried {summary.retried}",
        err=True,
    )
    for failure in summary.failures[:20]:
        typer.echo(f"{failure.video_id}: {failure.code} {failure.message}", err=True)
    if summary.total_failed:
        raise typer.Exit(1)


def read_catalogue(file: Path) -> tuple[list[Video], list[tuple[str, list[float]]], int]:
    import csv

    from ..domain.videos import parse_catalogue_row

    videos, vectors, skipped = [], [], 0
    with file.open(newline="", encoding="utf-8") as fh:
        for fields in csv.reader(fh):
            try:
                row = parse_catalogue_row(fields)
            except RecoError as exc:
                skipped += 1
                typer.echo(f"skipped: {exc.message}", err=True)
                continue
            videos.append(row.video)
            if row.vector is not None:
                vectors.append((str(row.video.videoid), row.vector))
    return videos, vectors, skipped


@needs_extras
def push_vectors(vectors: list[tuple[str, list[float]]], url: str, token: str) -> None:
    from ..client import Item, RecoClient, RequestFailed

    try:
        with RecoClient(url, token) as client:
            live = client.schema().spec
            dimension = len(vectors[0][1])
            if live.dimension != dimension:
                fail(
                    f"the file's vectors have {dimension} dimensions but the service takes "
                    f"{live.cql_type}: apply a {dimension}-dim schema first "
                    f"(kv-reco schema apply --dimension {dimension})",
                    2,
                )
            summary = client.ingest_many(Item(vid, vec) for vid, vec in vectors)
    except RequestFailed as exc:
        fail(f"the server refused the request ({exc.status_code}): {exc.message}")
    typer.echo(f"vectors: accepted {summary.accepted}, failed {summary.total_failed}", err=True)
    if summary.total_failed:
        raise typer.Exit(1)
