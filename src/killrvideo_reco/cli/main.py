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
) -> None:
    """Create keyspace, videos table and SAI vector index; idempotent."""
    from ..storage import CassandraStore

    settings = _settings()
    try:
        store = CassandraStore.open(settings)
        try:
            spec = store.apply_schema(
                dimension=dimension, similarity=similarity, replication_factor=replication_factor
            )
        finally:
            store.close()
    except RecoError as exc:
        _fail(exc.message)
    typer.echo(
        f"{settings.keyspace}.videos: content_features {spec.cql_type}, "
        f"{spec.similarity.value} similarity"
    )


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
def videos_load(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Bulk-insert videos from JSONL (one object per line, the fields of `add`)."""
    from ..domain.videos import parse_video_line

    try:
        with file.open("rb") as fh:
            videos = [
                parse_video_line(line, lineno=n) for n, line in enumerate(fh, 1) if line.strip()
            ]
        count = _insert(_settings(), videos)
    except RecoError as exc:
        _fail(exc.message)
    typer.echo(f"inserted {count} videos", err=True)


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
            spec = client.schema()
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
