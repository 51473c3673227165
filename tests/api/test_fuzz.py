"""A short round of `make fuzz` on every `make test`: schemathesis, zero 5xx."""

from __future__ import annotations

from pathlib import Path

from killrvideo_reco.config import Settings
from killrvideo_reco.storage import CassandraStore

from ..fuzzing import fuzz, fuzz_target, logged_errors


def test_schemathesis_finds_no_5xx(
    settings: Settings, store: CassandraStore, tmp_path: Path
) -> None:
    with fuzz_target(tmp_path, keyspace=settings.keyspace) as (url, token, log):
        result = fuzz(url, token, requests=300, examples=30, workdir=tmp_path)
        errors = logged_errors(log)
    assert result.requests >= 300
    assert result.server_errors == 0, result.summary()
    assert not result.failures, result.failures
    assert not errors, errors
