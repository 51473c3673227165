"""Settings: refused values name their variable; the docs' table lists every one."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from killrvideo_reco.config import Settings, load_settings, shown
from killrvideo_reco.errors import ConfigError

ROOT = Path(__file__).parents[2]
CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"


def docs_generator() -> ModuleType:
    """docs/hooks/generate.py, which writes the Configuration page's table at each build."""
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs/hooks/generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_variables() -> list[str]:
    table = docs_generator().settings_table()
    return [m for row in table.splitlines() for m in re.findall(r"^\| `(KV_[A-Z0-9_]+)`", row)]


def test_the_docs_table_lists_every_setting_once_and_nothing_else() -> None:
    settings = [f"KV_{name.upper()}" for name in Settings.model_fields]
    documented = documented_variables()
    assert documented == settings, "the generated table must follow Settings, one row each"
    assert len(set(documented)) == len(documented), "a variable listed twice"


def test_every_setting_has_a_one_line_meaning() -> None:
    generator = docs_generator()
    for variable, default, meaning in generator.settings_rows():
        assert meaning and "|" not in meaning, variable
        assert default, variable


def test_the_configuration_page_includes_the_generated_table_and_the_cli_only_variable() -> None:
    page = CONFIGURATION_PAGE.read_text()
    assert '--8<-- "build/docs-generated/settings.md"' in page
    # Read by the command line, not by the service's Settings: named on the page itself.
    assert "`KV_API_TOKEN`" in page
    assert "api_token" not in Settings.model_fields


def test_defaults_in_the_table_are_the_settings_defaults() -> None:
    rows = {var: default for var, default, _ in docs_generator().settings_rows()}
    assert rows["KV_MAX_BODY_BYTES"] == f"`{512 * 1024}`"
    assert rows["KV_CASSANDRA_TLS_VERIFY_HOSTNAME"] == "`true`"
    assert rows["KV_JWT_ALGORITHM"] == "`HS256`"
    assert rows["KV_LOCAL_DC"] == "-"
    assert rows["KV_STATE_DIR"] == "`~/.local/state/kv-reco`"


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("KV_PORT", "eighty", "KV_PORT: Input should be a valid integer"),
        ("KV_MAX_IN_FLIGHT", "0", "KV_MAX_IN_FLIGHT: Input should be greater than or equal to 1"),
        ("KV_LOG_FORMAT", "xml", "KV_LOG_FORMAT: Input should be 'text' or 'json'"),
        ("KV_LOG_LEVEL", "chatty", "KV_LOG_LEVEL: Input should be 'DEBUG'"),
        ("KV_CONSISTENCY", "MOST", "KV_CONSISTENCY: Input should be 'ANY'"),
        ("KV_JWT_SECRET", "too-short-secret", "KV_JWT_SECRET must be at least 32 characters"),
        # The graph options, bounded as Cassandra 5.0.9 bounds them (3200 / 512).
        ("KV_INDEX_BEAM_WIDTH", "0", "KV_INDEX_BEAM_WIDTH: Input should be greater than or equal"),
        ("KV_INDEX_BEAM_WIDTH", "-8", "KV_INDEX_BEAM_WIDTH: Input should be greater than or"),
        ("KV_INDEX_BEAM_WIDTH", "3201", "KV_INDEX_BEAM_WIDTH: Input should be less than or equal"),
        ("KV_INDEX_BEAM_WIDTH", "40.5", "KV_INDEX_BEAM_WIDTH: Input should be a valid integer"),
        ("KV_INDEX_MAX_CONNECTIONS", "0", "KV_INDEX_MAX_CONNECTIONS: Input should be greater"),
        ("KV_INDEX_MAX_CONNECTIONS", "513", "KV_INDEX_MAX_CONNECTIONS: Input should be less than"),
        ("KV_INDEX_MAX_CONNECTIONS", "many", "KV_INDEX_MAX_CONNECTIONS: Input should be a valid"),
    ],
)
def test_an_invalid_value_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert said in refused.value.message
    assert "\n" not in refused.value.message


def test_a_refused_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KV_JWT_SECRET", "x" * 40)
    monkeypatch.setenv("KV_JWT_ALGORITHM", "RS256")  # needs a public key: refused
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "x" * 40 not in refused.value.message


def test_levels_and_formats_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KV_LOG_LEVEL", "debug")
    monkeypatch.setenv("KV_LOG_FORMAT", "JSON")
    monkeypatch.setenv("KV_CONSISTENCY", "local_one")
    s = load_settings()
    assert (s.log_level, s.log_format, s.consistency) == ("DEBUG", "json", "LOCAL_ONE")


def test_shown_settings_mask_secrets_and_say_where_they_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KV_JWT_SECRET", "k" * 40)
    monkeypatch.setenv("KV_PORT", "9001")
    rows = {name: (value, from_env) for name, value, from_env in shown(load_settings())}
    assert set(rows) == {f"KV_{name.upper()}" for name in Settings.model_fields}
    assert rows["KV_JWT_SECRET"] == ("********", True)
    assert rows["KV_PORT"] == ("9001", True)
    assert rows["KV_HOST"] == ("127.0.0.1", False)
    assert rows["KV_CASSANDRA_PROTOCOL_VERSION"] == ("4", False)


def test_graph_options_at_their_maxima_are_accepted_and_explicit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not load_settings().index_graph_explicit  # defaults: apply may fall back
    monkeypatch.setenv("KV_INDEX_BEAM_WIDTH", "3200")
    monkeypatch.setenv("KV_INDEX_MAX_CONNECTIONS", "512")
    settings = load_settings()
    assert (settings.index_beam_width, settings.index_max_connections) == (3200, 512)
    assert settings.index_graph_explicit
