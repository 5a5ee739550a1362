"""The runtime owns the state: derived settings once, bounded caches it can drop."""

from __future__ import annotations

from pathlib import Path

from digestd.config import load_settings
from digestd.db import make_engine
from digestd.match import MatchCache, PaperText
from digestd.message import EncodedPieces
from digestd.runtime import LatestValue, Runtime


def test_the_link_secret_is_made_once_and_kept(config_file: Path) -> None:
    settings = load_settings(config_file, environ={})
    runtime = Runtime(settings, make_engine(settings.database_url, create=True))
    key_file = settings.data_dir / "secret.key"
    assert not key_file.exists()
    secret = runtime.link_secret
    assert key_file.exists() and secret == settings.link_secret()
    key_file.unlink()
    assert runtime.link_secret == secret  # not read (or written) again
    assert not key_file.exists()
    assert runtime.identity.domain == settings.smtp.from_address.rpartition("@")[2]


def test_the_match_cache_is_bounded_and_dropped() -> None:
    cache = MatchCache(max_terms=2, indexes_kept=1)
    catalog = cache.catalog()
    catalog.compile("alpha beta gamma")
    assert cache.catalog() is not catalog  # past its bound: a new catalog
    texts = {1: PaperText("graph", "", (), ())}
    index = cache.index(texts)
    assert cache.index(dict(texts)) is index
    cache.index({2: PaperText("vision", "", (), ())})
    assert cache.index(texts) is not index  # one index kept
    current = cache.catalog()
    cache.clear()
    assert cache.catalog() is not current


def test_a_latest_value_is_read_again_when_its_version_moves() -> None:
    value: LatestValue[list[int]] = LatestValue()
    loads: list[int] = []

    def load() -> list[int]:
        loads.append(1)
        return [len(loads)]

    assert value.get(1, load) == [1]
    assert value.get(1, load) == [1]
    assert value.get(2, load) == [2]
    value.clear()
    assert value.get(2, load) == [3]


def test_header_values_are_kept_by_the_runtimes_pieces_not_the_module() -> None:
    pieces = EncodedPieces()
    calls: list[str] = []

    def make(name: str) -> str:
        calls.append(name)
        return f"made {name}"

    assert pieces.header(make, "Ada") == pieces.header(make, "Ada") == "made Ada"
    assert calls == ["Ada"]  # made once, then kept
    pieces.clear()
    assert pieces.header(make, "Ada") == "made Ada" and calls == ["Ada", "Ada"]
    for number in range(5000):  # bounded: it starts over when full
        pieces.header(make, str(number))
    assert len(pieces.headers) <= 4096
