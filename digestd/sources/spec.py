"""The ``[[sources]]`` entries of the config file, checked into SourceSpec values (pure).

Each ``[[sources]]`` table names one place papers are fetched from: an http(s) ``url`` polled
by the daemon, or a local ``path`` read the same way. Errors are one line naming the entry and
key, as ``sources[2].url: ...`` (entries counted from 0, in file order).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digestd.errors import ConfigError
from digestd.ingest import FORMATS

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SOURCE_FORMATS = ("auto", *FORMATS)
_URL_UNSAFE = re.compile(r"[\s<>\"'\\\x00-\x1f\x7f]")

# Every key a [[sources]] entry takes, with its help (config.example.toml shows them).
SOURCE_KEYS: dict[str, str] = {
    "name": "required, unique: lower-case letters, digits and '-' (up to 64), e.g. arxiv-cl",
    "url": "http(s) URL to poll (give url or path, not both)",
    "path": "local file read at each poll instead of a URL",
    "format": f"how to read what it returns: {', '.join(SOURCE_FORMATS)} (default auto: detected)",
    "interval_minutes": "minutes between two polls by the daemon (default 60, at least 1)",
    "categories": "list of category names, for your own reference (optional)",
}
DEFAULT_INTERVAL_MINUTES = 60.0


@dataclass(frozen=True)
class SourceSpec:
    """One configured source: where its bytes come from and how often the daemon asks."""

    name: str
    url: str = ""
    path: str = ""
    format: str = "auto"
    interval_minutes: float = DEFAULT_INTERVAL_MINUTES
    categories: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        """The URL, or the resolved path of a local file: what the stored validators belong to."""
        return self.url or str(Path(self.path).expanduser().resolve())

    @property
    def parser_format(self) -> str | None:
        """The format handed to the parser: None lets it detect the format."""
        return None if self.format == "auto" else self.format


def source_specs(raw: Any, where: str) -> tuple[SourceSpec, ...]:
    """The sources of a ``[[sources]]`` array read from TOML; ConfigError names the bad key
    (``where`` says which file)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: sources must be an array of tables, written [[sources]]")
    specs: list[SourceSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        spec = _source_spec(entry, f"{where}: sources[{index}]")
        if spec.name in seen:
            raise ConfigError(
                f"{where}: sources[{index}].name: {spec.name!r} is the name of an earlier source"
            )
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _source_spec(entry: Any, at: str) -> SourceSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: must be a table")
    for key in entry:
        if key not in SOURCE_KEYS:
            raise ConfigError(f"{at}.{key}: unknown key (known: {', '.join(SOURCE_KEYS)})")
    name = _text(entry, "name", at)
    if not name:
        raise ConfigError(f"{at}.name: missing; every source needs a name")
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"{at}.name: {name!r} must be lower-case letters, digits and '-' (up to 64), "
            "starting with a letter or digit"
        )
    url, path = _text(entry, "url", at), _text(entry, "path", at)
    if bool(url) == bool(path):
        raise ConfigError(f"{at}: give exactly one of url and path")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or _URL_UNSAFE.search(url):
            raise ConfigError(f"{at}.url: {url!r} must be an http(s) URL without spaces or quotes")
    source_format = _text(entry, "format", at) or "auto"
    if source_format not in SOURCE_FORMATS:
        raise ConfigError(
            f"{at}.format: {source_format!r} is not one of {', '.join(SOURCE_FORMATS)}"
        )
    interval = entry.get("interval_minutes", DEFAULT_INTERVAL_MINUTES)
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ConfigError(f"{at}.interval_minutes: expected a number, got {interval!r}")
    if not math.isfinite(interval) or interval < 1:
        raise ConfigError(f"{at}.interval_minutes: {interval!r} must be at least 1")
    categories = entry.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ConfigError(f"{at}.categories: expected a list of strings like ['cs.CL']")
    return SourceSpec(
        name=name,
        url=url,
        path=path,
        format=source_format,
        interval_minutes=float(interval),
        categories=tuple(categories),
    )


def _text(entry: dict[str, Any], key: str, at: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{at}.{key}: expected a string, got {value!r}")
    return value.strip()
