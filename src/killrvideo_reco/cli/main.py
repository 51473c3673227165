"""The ``kv-reco`` command line."""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ..config import Settings, load_settings
from ..devnode import DevCluster, DevClusterConfig, NodeError
from ..domain.vectors import Similarity
from ..errors import RecoError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..client import Summary
    from ..domain.videos import Video

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="KillrVideo recommendation ingest."
)
cassandra_app = typer.Typer(no_args_is_help=True, help="Local Apache Cassandra 5.0 nodes.")
schema_app = typer.Typer(no_args_is_help=True, help="The killrvideo schema.")
videos_app = typer.Typer(no_args_is_help=True, help="Video rows (normally made by the catalogue).")
app.add_typer(cassandra_app, name="cassandra")
app.add_typer(schema_app, name="schema")
app.add_typer(videos_app, name="videos")


def _settings() -> Settings:
    try:
        return load_settings()
    except RecoError as exc:
        _fail(exc.message)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _cluster(settings: Settings, nodes: int) -> DevCluster:
    return DevCluster(
        DevClusterConfig(
            version=settings.cassandra_version,
            nodes=nodes,
            heap=settings.cassandra_heap,
            cache_dir=settings.cache_dir,
            state_dir=settings.state_dir,
            native_port=settings.cassandra_port,
        )
    )


NodesOpt = Annotated[int, typer.Option("--nodes", min=1, max=9, help="Nodes on 127.0.0.1..N")]


def _api_url(settings: Settings, url: str | None) -> str:
    return url or f"http://{settings.host}:{settings.port}"


def _api_token(settings: Settings, token: str | None) -> str:
    """--token, else KV_API_TOKEN, else a short creator token from this machine's key."""
    if token:
        return token
    from ..auth import CREATOR, mint_token

    try:
        return mint_token(settings, roles=[CREATOR], subject=None, ttl_s=3600)
    except RecoError as exc:
        _fail(f"no --token given and none can be minted here: {exc.message}")


UrlOpt = Annotated[
    str | None, typer.Option(help="The API's base URL [default: http://KV_HOST:KV_PORT]")
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        envvar="KV_API_TOKEN",
        help="Creator bearer token [default: minted with this machine's dev key]",
    ),
]


@cassandra_app.command("start")
def cassandra_start(
    nodes: NodesOpt = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for CQL")] = 180,
) -> None:
    """Start the local node(s), or find them running; wait until CQL answers."""
    cluster = _cluster(_settings(), nodes)
    try:
        statuses = cluster.start(timeout_s=timeout)
    except NodeError as exc:
        typer.echo(exc.log_tail, err=True)
        _fail(str(exc))
    for s in statuses:
        typer.echo(
            f"{s.name} {s.state} at {s.address}:{s.port}" + (f" (pid {s.pid})" if s.pid else "")
        )


@cassandra_app.command("stop")
def cassandra_stop(
    nodes: NodesOpt = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each drain")] = 300,
) -> None:
    """Drain and stop the nodes this tool started; wait until they have exited."""
    for s in _cluster(_settings(), nodes).stop(timeout_s=timeout):
        typer.echo(f"{s.name} {s.state}")


@cassandra_app.command("status")
def cassandra_status(nodes: NodesOpt = 1) -> None:
    """State, contact points and version of each node."""
    settings = _settings()
    statuses = _cluster(settings, nodes).status()
    answering = [s.address for s in statuses if s.state in ("running", "external")]
    version = _release_version(settings, answering) if answering else None
    for s in statuses:
        pid = f" pid={s.pid}" if s.pid else ""
        typer.echo(f"{s.name} {s.state} {s.address}:{s.port}{pid}")
    typer.echo(f"contact points: {','.join(answering) or '-'}")
    typer.echo(f"version: {version or '-'}")
    if not answering:
        raise typer.Exit(3)


def _release_version(settings: Settings, contact_points: list[str]) -> str | None:
    from ..storage import CassandraStore

    try:
        store = CassandraStore.open(
            settings.model_copy(update={"contact_points": ",".join(contact_points)})
        )
    except RecoError:
        return None
    try:
        rows = store.execute("SELECT release_version FROM system.local")
        return str(rows[0][0])
    finally:
        store.close()


@schema_app.command("apply")
def schema_apply(
    dimension: Annotated[int, typer.Option(min=1, max=8192, help="Vector dimension N")] = 1536,
    similarity: Annotated[
        Similarity, typer.Option(help="SAI similarity function")
    ] = Similarity.COSINE,
    replication_factor: Annotated[int, typer.Option(min=1, help="Replicas in the local DC")] = 1,
    column: Annotated[
        str | None,
        typer.Option(help="Vector column [default: KV_VECTOR_COLUMN, i.e. content_features]"),
    ] = None,
) -> None:
    """Create keyspace, videos table, vector column and its SAI index; idempotent."""
    from ..storage import CassandraStore

    settings = _settings()
    try:
        store = CassandraStore.open(settings)
        try:
            spec = store.apply_schema(
                dimension=dimension,
                similarity=similarity,
                replication_factor=replication_factor,
                column=column,
            )
        finally:
            store.close()
    except RecoError as exc:
        _fail(exc.message)
    typer.echo(
        f"{settings.keyspace}.videos: {column or settings.vector_column} {spec.cql_type}, "
        f"{spec.similarity.value} similarity"
    )


@schema_app.command("drop-column")
def schema_drop_column(
    column: Annotated[str, typer.Option(help="The vector column to drop, with its index")],
) -> None:
    """Drop an old model's vector column and index, the last step of a migration."""
    from ..storage import CassandraStore

    settings = _settings()
    if column == settings.vector_column:
        _fail(
            f"{column} is the column this configuration serves (KV_VECTOR_COLUMN); "
            "cut the services over to the new column first"
        )
    try:
        store = CassandraStore.open(settings)
        try:
            store.drop_vector_column(column)
        finally:
            store.close()
    except RecoError as exc:
        _fail(exc.message)
    typer.echo(f"dropped {settings.keyspace}.videos.{column} and its index")


@videos_app.command("add")
def videos_add(
    name: Annotated[str, typer.Option(help="Title")],
    description: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Repeat for several")] = None,
    userid: Annotated[uuid.UUID | None, typer.Option()] = None,
) -> None:
    """Insert one video (added_date = now); print only its new videoid."""
    from ..domain.videos import Video

    try:
        video = Video(name=name, description=description, tags=frozenset(tag or ()), userid=userid)
        _insert(_settings(), [video])
    except RecoError as exc:
        _fail(exc.message)
    typer.echo(str(video.videoid))


@videos_app.command("load")
def videos_load(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".jsonl or .csv")],
    with_vectors: Annotated[
        bool,
        typer.Option(
            "--with-vectors", help="Also send a .csv export's own vectors through the ingest API"
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Bulk-insert videos: JSONL with the fields of `add`, or a KillrVideo CSV export."""
    from ..domain.videos import parse_video_line

    settings = _settings()
    vectors: list[tuple[str, list[float]]] = []
    try:
        if file.suffix == ".csv":
            videos, vectors, skipped = _read_catalogue(file)
            if skipped:
                typer.echo(f"skipped {skipped} records that do not parse", err=True)
        else:
            with file.open("rb") as fh:
                videos = [
                    parse_video_line(line, lineno=n) for n, line in enumerate(fh, 1) if line.strip()
                ]
        count = _insert(settings, videos)
    except RecoError as exc:
        _fail(exc.message)
    typer.echo(f"inserted {count} videos", err=True)
    if with_vectors:
        if not vectors:
            _fail("--with-vectors needs a .csv export that carries vectors")
        _push_vectors(vectors, _api_url(settings, url), _api_token(settings, token))


def _read_catalogue(file: Path) -> tuple[list[Video], list[tuple[str, list[float]]], int]:
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


def _push_vectors(vectors: list[tuple[str, list[float]]], url: str, token: str) -> None:
    from ..client import Item, RecoClient, RequestFailed

    try:
        with RecoClient(url, token) as client:
            live = client.schema().spec
            dimension = len(vectors[0][1])
            if live.dimension != dimension:
                _fail(
                    f"the file's vectors have {dimension} dimensions but the service takes "
                    f"{live.cql_type}: apply a {dimension}-dim schema first "
                    f"(kv-reco schema apply --dimension {dimension})",
                    2,
                )
            summary = client.ingest_many(Item(vid, vec) for vid, vec in vectors)
    except RequestFailed as exc:
        _fail(f"the server refused the request ({exc.status_code}): {exc.message}")
    typer.echo(f"vectors: accepted {summary.accepted}, failed {summary.total_failed}", err=True)
    if summary.total_failed:
        raise typer.Exit(1)


def _insert(settings: Settings, videos: list[Video]) -> int:
    from ..storage import CassandraStore

    store = CassandraStore.open(settings)
    try:
        return store.insert_videos(videos)
    finally:
        store.close()


@app.command("token")
def token(
    role: Annotated[list[str], typer.Option(help="Role to grant; repeat for several")],
    sub: Annotated[uuid.UUID | None, typer.Option(help="Subject (user id)")] = None,
    ttl: Annotated[
        int, typer.Option(help="Seconds of validity; negative mints an expired token")
    ] = 3600,
) -> None:
    """Print a signed bearer token."""
    from ..auth import mint_token

    try:
        typer.echo(
            mint_token(_settings(), roles=role, subject=str(sub) if sub else None, ttl_s=ttl)
        )
    except RecoError as exc:
        _fail(exc.message)


@app.command("related")
def related(
    video_id: Annotated[uuid.UUID, typer.Argument(help="The video to find neighbours of")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
) -> None:
    """Print the videos most similar to VIDEO_ID, with their scores."""
    import asyncio

    from ..storage import CassandraStore

    store = CassandraStore.open(_settings())
    try:
        store.load_schema()
        items = asyncio.run(store.related(video_id, limit=limit))
    except RecoError as exc:
        _fail(exc.message)
    finally:
        store.close()
    for item in items:
        typer.echo(f"{item.score:.4f}  {item.video_id}  {item.title or ''}")


@app.command("ingest")
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

    settings = _settings()
    checkpoint = checkpoint or file.with_name(file.name + ".checkpoint")
    failed_file = failed_file or file.with_name(file.name + ".failed.jsonl")
    try:
        total = bulk.count_records(file, ids)
        if dry_run:
            raise typer.Exit(
                _dry_run(file, ids, _api_url(settings, url), _api_token(settings, token), total)
            )
        state = bulk.Checkpoint.load_or_new(checkpoint, file)
        if state.done:
            typer.echo(f"resuming after {state.done} of {total} records ({checkpoint})", err=True)
        else:
            failed_file.unlink(missing_ok=True)
        options = bulk.Options(batch_size, concurrency, write_timestamp)
        client = AsyncRecoClient(_api_url(settings, url), _api_token(settings, token))
        summary = asyncio.run(
            bulk.send_file(client, file, ids, state, checkpoint, failed_file, total, options)
        )
    except RequestFailed as exc:
        _fail(f"the server refused the request ({exc.status_code}): {exc.message}")
    except KeyboardInterrupt:
        _fail(f"interrupted after {state.done} records; run the same command to resume", 130)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
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

    from ..client import RecoClient, RequestFailed
    from . import bulk

    try:
        with RecoClient(url, token) as client:
            spec = client.schema().spec
    except RequestFailed as exc:
        _fail(f"the server is not ready ({exc.status_code}): {exc.message}")
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


@app.command("embed")
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

    from ..client import AsyncRecoClient, Item, RecoClient, RequestFailed
    from ..domain.videos import embedding_text
    from ..embedding import MODEL_NAME, Embedder, model_dimension
    from ..storage import CassandraStore

    settings = _settings()
    base_url, bearer = _api_url(settings, url), _api_token(settings, token)
    try:
        with RecoClient(base_url, bearer) as client:
            server = client.schema()
    except RequestFailed as exc:
        _fail(f"the service is not ready ({exc.status_code}): {exc.message}")
    dimension = model_dimension()
    if dimension != server.spec.dimension:
        _fail(
            f"{MODEL_NAME} makes {dimension}-dim vectors, but the service at {base_url} "
            f"writes {server.column} {server.spec.cql_type}; nothing was done. Move to a "
            f"{dimension}-dim column first (README: changing the model)",
            2,
        )
    embedder = Embedder()
    store = CassandraStore.open(settings.model_copy(update={"vector_column": server.column}))
    bar = tqdm(unit="video", desc="embed", dynamic_ncols=True)

    def items() -> Iterator[Item]:
        videos = store.scan_videos(only_missing=missing_only)
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
        _fail(f"the server refused the request ({exc.status_code}): {exc.message}")
    except RecoError as exc:
        _fail(exc.message)
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


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Default KV_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default KV_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        "killrvideo_reco.api.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,  # one log line per vector would cost more than the ingest
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":  # pragma: no cover
    app()
