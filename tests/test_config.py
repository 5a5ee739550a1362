"""Config: defaults, file, environment overrides, and one-line errors for bad keys and values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from digestd.config import load_settings, settings_table
from digestd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_example_config_documents_every_key_with_its_default() -> None:
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    text = EXAMPLE.read_text(encoding="utf-8")
    for section, key, default, help_text, _choices in settings_table():
        assert example[section][key] == default, f"[{section}] {key}"
        assert help_text in text
    assert load_settings(EXAMPLE, environ={}) == load_settings(None, environ={})


def test_file_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[smtp]\nhost = "mail.example.org"\nport = 587\nsecurity = "starttls"\n')
    settings = load_settings(
        path, environ={"DIGESTD_SMTP_PORT": "2525", "DIGESTD_PATHS_DATA_DIR": "/srv/d"}
    )
    assert settings.smtp.host == "mail.example.org"
    assert settings.smtp.port == 2525
    assert settings.smtp.security == "starttls"
    assert settings.data_dir == Path("/srv/d")
    assert settings.folder("inbox") == Path("/srv/d/inbox")
    assert settings.database_url == "sqlite:////srv/d/digestd.db"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[feeds]\nmax_entries = 7\n")
    assert load_settings(None, environ={"DIGESTD_CONFIG": str(path)}).feeds.max_entries == 7


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        ("[smtp]\nhots = 'x'\n", {}, r"unknown key \[smtp\] hots"),
        ("[mail]\nhost = 'x'\n", {}, r"unknown section \[mail\]"),
        ("[smtp]\nport = 'twenty'\n", {}, r"\[smtp\] port: expected int"),
        ("[smtp]\nsecurity = 'ssl'\n", {}, r"security = 'ssl' is not one of none, starttls, tls"),
        ("[delivery]\nbackend = 'carrier-pigeon'\n", {}, "backend"),
        ("[schedule]\ndefault_timezone = 'Mars/Olympus'\n", {}, "not an IANA timezone"),
        ("[schedule]\ndefault_send_hour = 24\n", {}, "not an hour"),
        ("[feeds]\nbase_url = 'example.org'\n", {}, "must be an http"),
        ("[schedule]\ndefault_timezone = 'America'\n", {}, "not an IANA timezone"),
        ("[feeds]\nbase_url = 'https://x.org/<a>'\n", {}, "without spaces, quotes or angle"),
        ("[smtp]\nport = 99999\n", {}, "is not a TCP port"),
        ("[digest]\nlookback_days = -5\n", {}, "lookback_days = -5 must be a positive"),
        ("", {"DIGESTD_SCHEDULE_INGEST_INTERVAL_MINUTES": "nan"}, "must be a positive number"),
        ("not toml = = =\n", {}, "not valid TOML"),
        ("", {"DIGESTD_SMTP_PORT": "abc"}, "DIGESTD_SMTP_PORT: expected int"),
        ("", {"DIGESTD_SMTP_NOPE": "1"}, "DIGESTD_SMTP_NOPE names no config key"),
    ],
)
def test_bad_config_is_one_line_error_naming_file_and_key(
    tmp_path: Path, content: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, environ=env)
    assert "\n" not in str(info.value)
    if not env:
        assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})
