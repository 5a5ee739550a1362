"""Sources around the fetch job: the config entries, /healthz, `digestd fetch` and `digestd
sources` through the CLI's entry point, and the daemon's fetch jobs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from digestd import store
from digestd.config import load_settings
from digestd.daemon import build_scheduler
from digestd.db import session_scope
from digestd.errors import ConfigError
from digestd.web.health import health_router
from tests.conftest import CliResult
from tests.support.source_server import Reply, SourceServer
from tests.support.sources_site import (  # noqa: F401  (the server and site_for fixtures)
    BODY,
    Site,
    SiteFor,
    server_fixture,
    site_for_fixture,
)

Cli = Callable[..., CliResult]
NOW = datetime(2024, 3, 14, 12, 0, tzinfo=UTC)


# -- config ---------------------------------------------------------------------------------


def test_sources_and_fetching_are_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[smtp]\nfrom_address = "me@example.org"\n[fetching]\nstale_hours = 12\n'
        '[[sources]]\nname = "arxiv-cl"\nurl = "https://rss.arxiv.org/rss/cs.CL"\n'
        'format = "arxiv-rss"\ncategories = ["cs.CL"]\n'
        '[[sources]]\nname = "local"\npath = "today.txt"\ninterval_minutes = 5\n'
    )
    settings = load_settings(path, environ={"DIGESTD_FETCHING_SPACING_SECONDS": "1.5"})
    first, second = settings.sources
    assert (first.name, first.format, first.categories) == ("arxiv-cl", "arxiv-rss", ("cs.CL",))
    assert (first.interval_minutes, first.parser_format) == (60.0, "arxiv-rss")
    assert second.location == str(Path("today.txt").resolve())
    assert (second.format, second.parser_format, second.interval_minutes) == ("auto", None, 5.0)
    assert settings.fetching.stale_hours == 12.0 and settings.fetching.spacing_seconds == 1.5
    assert settings.fetch_contact == "me@example.org"
    assert load_settings(None, environ={}).sources == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ('[[sources]]\nurl = "https://x.org/"\n', r"sources\[0\]\.name: missing"),
        ('[[sources]]\nname = "Bad Name"\nurl = "https://x.org/"\n', r"sources\[0\]\.name: 'Bad"),
        ('[[sources]]\nname = "a"\n', r"sources\[0\]: give exactly one of url and path"),
        (
            '[[sources]]\nname = "a"\nurl = "https://x.org/"\npath = "f"\n',
            r"sources\[0\]: give exactly one",
        ),
        ('[[sources]]\nname = "a"\nurl = "ftp://x.org/"\n', r"sources\[0\]\.url: 'ftp"),
        (
            '[[sources]]\nname = "a"\nurl = "https://x.org/"\n'
            '[[sources]]\nname = "b"\nurl = "https://x.org/"\nformat = "pdf"\n',
            r"sources\[1\]\.format: 'pdf' is not one of auto, text",
        ),
        (
            '[[sources]]\nname = "a"\npath = "f"\ninterval_minutes = 0.5\n',
            r"sources\[0\]\.interval_minutes: 0\.5 must be at least 1",
        ),
        ('[[sources]]\nname = "a"\npath = "f"\ncategories = "cs.CL"\n', r"\.categories: expected"),
        ('[[sources]]\nname = "a"\npath = "f"\nevery = 5\n', r"sources\[0\]\.every: unknown key"),
        (
            '[[sources]]\nname = "a"\npath = "f"\n[[sources]]\nname = "a"\npath = "g"\n',
            r"sources\[1\]\.name: 'a' is the name of an earlier source",
        ),
        ("[sources]\nstale_hours = 3\n", r"sources must be an array of tables"),
        ("[fetching]\nretries = -1\n", r"\[fetching\] retries = -1 must be 0 or more"),
        ("[fetching]\ntimeout_seconds = 0\n", r"\[fetching\] timeout_seconds = 0\.0 must be a"),
        (
            '[fetching]\ncontact = "not an address"\n[[sources]]\nname = "a"\npath = "f"\n',
            r"\[fetching\] contact = 'not an address' is not an email address",
        ),
    ],
)
def test_bad_sources_are_one_line_errors_naming_the_key(
    tmp_path: Path, entries: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(entries)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, environ={})
    assert "\n" not in str(info.value) and str(path) in str(info.value)


# -- /healthz -------------------------------------------------------------------------------


async def healthz(site: Site, now: datetime) -> httpx.Response:
    app = FastAPI()
    app.include_router(health_router(site.engine, site.settings, clock=lambda: now))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get("/healthz")


async def test_healthz_names_a_source_failing_longer_than_stale_hours(site_for: SiteFor) -> None:
    site = site_for(
        [{"name": "empty", "path": "a.txt"}, {"name": "down", "path": "b.txt"}],
        stale_hours=36,
    )
    with session_scope(site.engine) as session:
        store.record_fetch_success(  # an empty day: healthy
            session,
            "empty",
            url="a",
            now=NOW - timedelta(hours=1),
            papers=0,
            new=0,
            etag="",
            last_modified="",
        )
        store.record_fetch_failure(
            session, "down", url="b", now=NOW - timedelta(hours=30), reason="HTTP 503"
        )
    young = await healthz(site, NOW)
    assert young.status_code == 200
    body = young.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["sources"]["empty"]["last_paper_count"] == 0
    assert body["sources"]["empty"]["last_error"] == ""
    assert body["sources"]["down"]["last_error"] == "HTTP 503"
    assert body["sources"]["down"]["failing_since"] == (NOW - timedelta(hours=30)).isoformat()

    old = await healthz(site, NOW + timedelta(hours=7))  # failing for 37 h now
    assert old.status_code == 503
    body = old.json()
    assert body["status"] == "error" and body["database"] == "ok"
    assert body["stale_sources"] == ["down"]
    assert "down" in body["problem"] and "36 h" in body["problem"]
    assert body["sources"]["down"]["stale"] is True
    assert body["sources"]["empty"]["stale"] is False
    assert old.headers["cache-control"] == "no-store"


async def test_healthz_without_sources_keeps_its_answer(site_for: SiteFor) -> None:
    site = site_for([])
    response = await healthz(site, NOW)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "last_ingest": None,
        "last_send": None,
    }


# -- the CLI --------------------------------------------------------------------------------


def test_digestd_fetch_and_digestd_sources(
    site_for: SiteFor, server: SourceServer, cli: Cli
) -> None:
    good = server.route("/good", Reply(body=BODY, etag='"1"'))
    down = server.route("/down", Reply(503))
    site_for([{"name": "good", "url": good}, {"name": "down", "url": down}], retries=0)
    assert cli("init").code == 0
    result = cli("fetch")
    assert result.code == 3, result.err
    assert "fetching good (1/2)" in result.err and "fetching down (2/2)" in result.err
    assert "good" in result.out and "stored" in result.out and "87" in result.out
    assert "HTTP 503" in result.out
    assert "2 sources: 87 new papers, 1 failed (down)" in result.out

    again = cli("fetch", "good")
    assert again.code == 0, again.err
    assert "not modified" in again.out

    listing = cli("sources")
    assert listing.code == 0, listing.err
    assert "good" in listing.out and "down" in listing.out and "HTTP 503" in listing.out
    assert "STALE" not in listing.out

    missing = cli("fetch", "nope")
    assert missing.code == 1
    assert missing.err.startswith("error: no source named 'nope'")
    assert len(missing.err.strip().splitlines()) == 1


def test_digestd_sources_marks_a_stale_source_and_fetch_exits_2_on_quarantine(
    site_for: SiteFor, server: SourceServer, cli: Cli
) -> None:
    junk = server.route("/junk", Reply(body=b"nothing to read here"))
    site = site_for([{"name": "junk", "url": junk}], stale_hours=1)
    assert cli("init").code == 0
    result = cli("fetch")
    assert result.code == 2
    assert "quarantined" in result.out
    with session_scope(site.engine) as session:
        state = store.source_state(session, "junk")
        assert state is not None
        state.failing_since = datetime.now(UTC) - timedelta(hours=2)
    listing = cli("sources")
    assert "STALE" in listing.out


def test_digestd_fetch_without_sources_says_so(site_for: SiteFor, cli: Cli) -> None:
    site_for([])
    assert cli("init").code == 0
    result = cli("fetch")
    assert result.code == 0 and "no sources configured" in result.out


# -- the daemon -----------------------------------------------------------------------------


def test_the_daemon_schedules_one_fetch_job_per_source(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/cl", Reply(body=BODY))
    site = site_for(
        [{"name": "cl", "url": url}, {"name": "hf", "path": "x.json", "interval_minutes": 90}]
    )
    scheduler = build_scheduler(site.settings, site.engine, stop=threading.Event())
    scheduler.start(paused=True)  # jobs take the scheduler's defaults once it has started
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert {"fetch-cl", "fetch-hf"} <= set(jobs)
        assert jobs["fetch-hf"].trigger.interval == timedelta(minutes=90)
        assert jobs["fetch-cl"].trigger.interval == timedelta(minutes=60)
        assert jobs["fetch-cl"].max_instances == 1 and jobs["fetch-cl"].coalesce
        # The fetches have their own executor; every other job shares the default one.
        assert {job.executor for name, job in jobs.items() if name.startswith("fetch-")} == {
            "fetch"
        }
        assert {job.executor for name, job in jobs.items() if not name.startswith("fetch-")} == {
            "default"
        }
        jobs["fetch-cl"].func(*jobs["fetch-cl"].args)  # what the scheduler runs
        assert site.papers() == 87
        # New papers: a feeds rebuild is asked of the default executor, not run in the fetch.
        assert not (site.settings.folder("feeds") / "index.html").exists()
        rebuild = [job for job in scheduler.get_jobs() if job.id not in jobs]
        assert [(job.func.__name__, job.executor) for job in rebuild] == [
            ("publish_feeds", "default")
        ]
        rebuild[0].func(*rebuild[0].args)
        assert (site.settings.folder("feeds") / "index.html").exists()
    finally:
        scheduler.shutdown(wait=False)
