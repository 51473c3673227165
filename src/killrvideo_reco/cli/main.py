"""The ``kv-reco`` command line."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import Settings
from ..devnode import DEV_USERNAME, DevCluster, DevClusterConfig, NodeError, TlsError
from ..domain.vectors import Similarity
from ..errors import RecoError
from . import pipeline
from ._common import TokenOpt, UrlOpt, api_token, api_url, fail, get_settings, needs_extras

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
config_app = typer.Typer(no_args_is_help=True, help="The settings in force (KV_* variables).")
app.add_typer(config_app, name="config")


def _cluster(
    settings: Settings,
    nodes: int,
    *,
    address: str = "127.0.0.1",
    state_dir: Path | None = None,
    auth: bool = False,
    tls: bool = False,
    custom_index_options: bool = True,
) -> DevCluster:
    try:
        return DevCluster(
            DevClusterConfig(
                version=settings.cassandra_version,
                nodes=nodes,
                heap=settings.cassandra_heap,
                cache_dir=settings.cache_dir,
                state_dir=state_dir or settings.state_dir,
                native_port=settings.cassandra_port,
                first_address=address,
                auth=auth,
                tls=tls,
                custom_index_options=custom_index_options,
            )
        )
    except ValueError as exc:
        fail(str(exc))


NodesOpt = Annotated[int, typer.Option("--nodes", min=1, max=9, help="Nodes on 127.0.0.1..N")]
AddressOpt = Annotated[
    str,
    typer.Option("--address", help="The first node's address (127.0.0.N); the others follow it"),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Where these nodes live [default: KV_STATE_DIR]; one cluster per dir"
    ),
]


@cassandra_app.command("start")
def cassandra_start(
    nodes: NodesOpt = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for CQL")] = 180,
    address: AddressOpt = "127.0.0.1",
    state_dir: StateDirOpt = None,
    auth: Annotated[
        bool, typer.Option("--auth", help="PasswordAuthenticator; user cassandra/cassandra")
    ] = False,
    tls: Annotated[
        bool, typer.Option("--tls", help="Client encryption with a dev CA made by keytool")
    ] = False,
    custom_index_options: Annotated[
        bool,
        typer.Option(
            "--custom-index-options/--no-custom-index-options",
            help="Allow SAI vector graph options (-Dcassandra.sai.vector.allow_custom_parameters)",
        ),
    ] = True,
) -> None:
    """Start the local node(s), or find them running; wait until CQL answers."""
    cluster = _cluster(
        get_settings(),
        nodes,
        address=address,
        state_dir=state_dir,
        auth=auth,
        tls=tls,
        custom_index_options=custom_index_options,
    )
    try:
        statuses = cluster.start(timeout_s=timeout)
    except (NodeError, TlsError) as exc:
        typer.echo(getattr(exc, "log_tail", ""), err=True)
        fail(str(exc))
    for s in statuses:
        typer.echo(
            f"{s.name} {s.state} at {s.address}:{s.port}" + (f" (pid {s.pid})" if s.pid else "")
        )
    if auth:
        typer.echo(f"credentials: KV_CASSANDRA_USERNAME={DEV_USERNAME} KV_CASSANDRA_PASSWORD=…")
    if cluster.tls_ca_pem is not None:
        typer.echo(f"TLS CA certificate: KV_CASSANDRA_TLS_CA_FILE={cluster.tls_ca_pem}")


@cassandra_app.command("stop")
def cassandra_stop(
    nodes: NodesOpt = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each drain")] = 300,
    address: AddressOpt = "127.0.0.1",
    state_dir: StateDirOpt = None,
) -> None:
    """Drain and stop the nodes this tool started; wait until they have exited."""
    cluster = _cluster(get_settings(), nodes, address=address, state_dir=state_dir)
    for s in cluster.stop(timeout_s=timeout):
        typer.echo(f"{s.name} {s.state}")


@cassandra_app.command("status")
def cassandra_status(
    nodes: NodesOpt = 1, address: AddressOpt = "127.0.0.1", state_dir: StateDirOpt = None
) -> None:
    """State, contact points and version of each node."""
    settings = get_settings()
    statuses = _cluster(settings, nodes, address=address, state_dir=state_dir).status()
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
        rows = store.schema.execute("SELECT release_version FROM system.local")
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

    settings = get_settings()
    try:
        store = CassandraStore.open(settings)
        try:
            spec = store.schema.apply(
                dimension=dimension,
                similarity=similarity,
                replication_factor=replication_factor,
                column=column,
                note=lambda line: typer.echo(f"note: {line}", err=True),
            )
        finally:
            store.close()
    except RecoError as exc:
        fail(exc.message)
    typer.echo(
        f"{settings.keyspace}.videos: {column or settings.vector_column} {spec.cql_type}, "
        f"{spec.similarity.value} similarity, {spec.graph}"
    )


@schema_app.command("copy-vectors")
def schema_copy_vectors(
    source: Annotated[str, typer.Option("--from", help="The column to copy the vectors from")],
    target: Annotated[
        str | None,
        typer.Option("--to", help="The column to fill [default: KV_VECTOR_COLUMN]"),
    ] = None,
    missing_only: Annotated[
        bool, typer.Option("--missing-only", help="Only rows whose target is still empty")
    ] = False,
) -> None:
    """Copy stored vectors into a new column, whose index has other graph options.

    The same vectors are indexed again by the new column's index; related
    videos keep answering from the old column until the services move over.
    """
    from ..storage import CassandraStore

    settings = get_settings()
    target = target or settings.vector_column
    if target == source:
        fail(f"--from and --to both name {source}: copy into a new column")
    try:
        with CassandraStore.open(settings) as store:
            target_spec = store.schema.vector_spec_of(target)
            source_spec = store.schema.vector_spec_of(source)
            if source_spec.dimension != target_spec.dimension:
                fail(
                    f"{source} is {source_spec.cql_type} but {target} is "
                    f"{target_spec.cql_type}: a new dimension is a new model (kv-reco embed)"
                )
            copied = store.videos.copy_vectors(
                source=source, target=target, only_missing=missing_only
            )
    except RecoError as exc:
        fail(exc.message)
    typer.echo(
        f"copied {copied} vectors from {settings.keyspace}.videos.{source} to {target} "
        f"(its index: {target_spec.graph})"
    )


@schema_app.command("drop-column")
def schema_drop_column(
    column: Annotated[str, typer.Option(help="The vector column to drop, with its index")],
) -> None:
    """Drop an old model's vector column and index, the last step of a migration."""
    from ..storage import CassandraStore

    settings = get_settings()
    if column == settings.vector_column:
        fail(
            f"{column} is the column this configuration serves (KV_VECTOR_COLUMN); "
            "cut the services over to the new column first"
        )
    try:
        store = CassandraStore.open(settings)
        try:
            store.schema.drop_vector_column(column)
        finally:
            store.close()
    except RecoError as exc:
        fail(exc.message)
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
        _insert(get_settings(), [video])
    except RecoError as exc:
        fail(exc.message)
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

    settings = get_settings()
    vectors: list[tuple[str, list[float]]] = []
    try:
        if file.suffix == ".csv":
            videos, vectors, skipped = pipeline.read_catalogue(file)
            if skipped:
                typer.echo(f"skipped {skipped} records that do not parse", err=True)
        else:
            with file.open("rb") as fh:
                videos = [
                    parse_video_line(line, lineno=n) for n, line in enumerate(fh, 1) if line.strip()
                ]
        count = _insert(settings, videos)
    except RecoError as exc:
        fail(exc.message)
    typer.echo(f"inserted {count} videos", err=True)
    if with_vectors:
        if not vectors:
            fail("--with-vectors needs a .csv export that carries vectors")
        pipeline.push_vectors(vectors, api_url(settings, url), api_token(settings, token))


def _insert(settings: Settings, videos: list[Video]) -> int:
    from ..storage import CassandraStore

    store = CassandraStore.open(settings)
    try:
        return store.videos.insert(videos)
    finally:
        store.close()


@config_app.command("show")
def config_show(
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live", help="Also read the index's graph options from the cluster"
        ),
    ] = True,
) -> None:
    """Print every setting in force, as KV_NAME=value, secrets masked; then the live index."""
    import os

    from ..config import shown

    rows = shown(get_settings())
    if "KV_API_TOKEN" in os.environ:  # the pipeline commands' token, not a service setting
        rows.append(("KV_API_TOKEN", "********", True))
    width = max(len(name) + len(value) for name, value, _ in rows) + 1
    for name, value, from_env in rows:
        line = f"{name}={value}"
        typer.echo(f"{line:<{width}}  # {'environment' if from_env else 'default'}")
    if live:
        typer.echo(_live_index(get_settings()))


def _live_index(settings: Settings) -> str:
    """One comment line: the index in force as the cluster holds it, or why it cannot be read."""
    from ..storage import CassandraStore
    from ..storage.schema import index_name

    name = f"{settings.keyspace}.{index_name(settings.vector_column)}"
    try:
        with CassandraStore.open(settings) as store:
            spec = store.schema.vector_spec()
    except RecoError as exc:
        return f"# live index {name}: not readable: {exc.message}"
    graph = spec.graph
    assert graph is not None  # read from the schema
    return (
        f"# live index {name}: {spec.cql_type}, {spec.similarity.value}, "
        f"construction_beam_width={graph.beam_width}, "
        f"maximum_node_connections={graph.max_connections}"
    )


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
            mint_token(get_settings(), roles=role, subject=str(sub) if sub else None, ttl_s=ttl)
        )
    except RecoError as exc:
        fail(exc.message)


@app.command("related")
def related(
    video_id: Annotated[uuid.UUID, typer.Argument(help="The video to find neighbours of")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
) -> None:
    """Print the videos most similar to VIDEO_ID, with their scores."""
    import asyncio

    from ..storage import CassandraStore

    store = CassandraStore.open(get_settings())
    try:
        store.load_schema()
        items = asyncio.run(store.related.nearest(video_id, limit=limit))
    except RecoError as exc:
        fail(exc.message)
    finally:
        store.close()
    for item in items:
        typer.echo(f"{item.score:.4f}  {item.video_id}  {item.title or ''}")


app.command("ingest")(needs_extras(pipeline.ingest))
app.command("embed")(needs_extras(pipeline.embed))


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Default KV_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default KV_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Serve the HTTP API; ``--workers N``: N processes, each with its own session and limit."""
    from ..logs import configure

    settings = get_settings()
    configure(level=settings.log_level, fmt=settings.log_format)
    metrics_dir = None
    if workers > 1:
        # Each worker is a process of its own (session, limiter, metrics): they
        # share their metrics through prometheus_client's multiprocess mode, in a
        # directory of this run's (api/metrics.py). Set before any worker starts.
        metrics_dir = tempfile.mkdtemp(prefix="kv-reco-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(settings, host=host, port=port, workers=workers)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(settings: Settings, *, host: str | None, port: int | None, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        "killrvideo_reco.api.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        loop="uvloop",
        # httptools with deadlines and header limits for slow and greedy clients.
        http="killrvideo_reco.api.server:GuardedHttpToolsProtocol",
        timeout_keep_alive=settings.keepalive_timeout_s,
        access_log=False,  # ours is api/front.py: one line per request, with its request id
        log_config=None,  # keep logs.configure's format for uvicorn's own lines
        log_level=settings.log_level.lower(),
        # On SIGTERM: stop accepting, let in-flight requests finish, then cancel them.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":  # pragma: no cover
    app()
