"""`kv-reco config show`, and a bad setting stopping `serve` before it starts."""

from __future__ import annotations

import os
import subprocess

from ..conftest import KV


def kv(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KV, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_config_show_prints_every_setting_with_secrets_masked() -> None:
    secret, token = "jwt-secret-" + "q" * 32, "api-token-value"
    done = kv("config", "show", KV_JWT_SECRET=secret, KV_API_TOKEN=token, KV_PORT="8181")
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout and token not in done.stdout
    lines = {line.split("=", 1)[0]: line for line in done.stdout.splitlines()}
    assert lines["KV_JWT_SECRET"].startswith("KV_JWT_SECRET=********")
    assert lines["KV_API_TOKEN"].startswith("KV_API_TOKEN=********")
    assert lines["KV_PORT"].split() == ["KV_PORT=8181", "#", "environment"]
    assert lines["KV_MAX_IN_FLIGHT"].split() == ["KV_MAX_IN_FLIGHT=4", "#", "default"]


def test_an_invalid_value_stops_serve_with_one_line_and_status_2() -> None:
    done = kv("serve", KV_SHUTDOWN_TIMEOUT_S="-1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: invalid configuration: KV_SHUTDOWN_TIMEOUT_S:")
