"""kv-reco commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import jwt

from killrvideo_reco.config import Settings
from killrvideo_reco.storage import CassandraStore

from ..conftest import KV


def kv(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KV_KEYSPACE": settings.keyspace,
        "KV_JWT_SECRET": settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
        "KV_STATE_DIR": str(settings.state_dir),
    }
    return subprocess.run([KV, *args], capture_output=True, text=True, env=env, timeout=120)


def test_videos_add_prints_only_the_new_videoid(settings: Settings, store: CassandraStore) -> None:
    userid = uuid.uuid4()
    done = kv(
        settings,
        "videos",
        "add",
        "--name",
        "CLI video",
        "--description",
        "d",
        "--tag",
        "a",
        "--tag",
        "b",
        "--userid",
        str(userid),
    )
    assert done.returncode == 0, done.stderr
    videoid = uuid.UUID(done.stdout.strip())
    assert done.stdout == f"{videoid}\n"
    row = store.videos.read(videoid)
    assert row is not None
    assert (row["name"], row["description"], set(row["tags"]), row["userid"]) == (
        "CLI video",
        "d",
        {"a", "b"},
        userid,
    )
    assert row["added_date"] is not None and row["content_features"] is None


def test_videos_load_bulk_inserts_jsonl(
    settings: Settings, store: CassandraStore, tmp_path: Path
) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    lines = [
        json.dumps({"videoid": str(i), "name": f"bulk {n}", "tags": ["x"]})
        for n, i in enumerate(ids)
    ]
    (tmp_path / "videos.jsonl").write_text("\n".join(lines) + "\n\n")
    done = kv(settings, "videos", "load", str(tmp_path / "videos.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "inserted 3 videos" in done.stderr
    assert [store.videos.read(i)["name"] for i in ids] == ["bulk 0", "bulk 1", "bulk 2"]  # type: ignore[index]


def test_videos_load_names_the_bad_line(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"name": "ok"}\n{"title": "no name"}\n')
    done = kv(settings, "videos", "load", str(tmp_path / "bad.jsonl"))
    assert done.returncode == 1 and "line 2" in done.stderr


def test_token_mints_roles_subject_and_expiry(settings: Settings) -> None:
    sub = uuid.uuid4()
    done = kv(
        settings,
        "token",
        "--role",
        "creator",
        "--role",
        "viewer",
        "--sub",
        str(sub),
        "--ttl",
        "120",
    )
    assert done.returncode == 0, done.stderr
    secret = settings.jwt_secret.get_secret_value()  # type: ignore[union-attr]
    claims = jwt.decode(done.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["roles"] == ["creator", "viewer"] and claims["sub"] == str(sub)
    # iat rounds down, exp up: the token lives at least the ttl asked.
    assert 120 <= claims["exp"] - claims["iat"] <= 121


def test_a_negative_ttl_mints_an_expired_token(settings: Settings) -> None:
    done = kv(settings, "token", "--role", "creator", "--ttl", "-60")
    secret = settings.jwt_secret.get_secret_value()  # type: ignore[union-attr]
    claims = jwt.decode(
        done.stdout.strip(), secret, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert claims["exp"] < claims["iat"]
