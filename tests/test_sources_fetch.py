"""Fetching sources from a real loopback HTTP server: validators and 304, retries and
Retry-After, timeouts, the size limit, politeness per host, quarantine, source state."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from digestd import store
from digestd.db import read_scope
from digestd.errors import NotFoundError
from digestd.jobs.fetch_job import run_fetch
from digestd.models import Dump, SourceState
from digestd.sources import host_gate, retry_after_seconds
from tests.support.source_server import Reply, SourceServer
from tests.support.sources_site import (  # noqa: F401  (the server and site_for fixtures)
    BODY,
    SLACK,
    Site,
    SiteFor,
    server_fixture,
    site_for_fixture,
)


def state_of(site: Site, name: str) -> SourceState:
    with read_scope(site.engine) as session:
        state = store.source_state(session, name)
    assert state is not None
    return state


def test_second_poll_sends_the_etag_and_a_304_stores_nothing(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/cl", Reply(body=BODY, etag='"v1"'))
    site = site_for([{"name": "cl", "url": url}])
    first = run_fetch(site.settings, site.engine)
    assert [(o.status, o.papers, o.new) for o in first.sources] == [("stored", 87, 87)]
    assert site.dumps() == 1
    with read_scope(site.engine) as session:
        dump = session.exec(select(Dump)).one()
    assert dump.source == "cl" and dump.file_name.startswith("cl-")
    assert state_of(site, "cl").etag == '"v1"'

    second = run_fetch(site.settings, site.engine)
    assert [(o.status, o.papers, o.new) for o in second.sources] == [("not modified", 0, 0)]
    requests = server.requests("/cl")
    assert "if-none-match" not in requests[0].headers
    assert requests[1].headers["if-none-match"] == '"v1"'
    assert requests[1].status == 304
    assert site.dumps() == 1
    state = state_of(site, "cl")
    assert state.last_error == "" and state.failing_since is None
    assert state.last_success_at is not None and state.last_paper_count == 0
    assert requests[0].headers["user-agent"].startswith("digestd/")
    assert "(+mailto:papers@digest.example.org)" in requests[0].headers["user-agent"]


def test_last_modified_is_sent_back_and_a_new_url_forgets_the_validators(
    site_for: SiteFor, server: SourceServer
) -> None:
    stamp = "Thu, 14 Mar 2024 06:00:00 GMT"
    url = server.route("/a", Reply(body=BODY, headers={"Last-Modified": stamp}))
    site = site_for([{"name": "cl", "url": url}])
    run_fetch(site.settings, site.engine)
    run_fetch(site.settings, site.engine)
    assert server.requests("/a")[1].headers["if-modified-since"] == stamp
    moved = server.route("/b", Reply(body=BODY))
    site = site_for([{"name": "cl", "url": moved}])
    report = run_fetch(site.settings, site.engine)
    assert report.sources[0].status == "already ingested"  # the same bytes
    assert "if-modified-since" not in server.requests("/b")[0].headers
    assert state_of(site, "cl").url == moved and state_of(site, "cl").last_modified == ""


def test_a_500_is_retried_then_stored(site_for: SiteFor, server: SourceServer) -> None:
    url = server.route("/flaky", Reply(500), Reply(body=BODY))
    site = site_for([{"name": "flaky", "url": url}])
    report = run_fetch(site.settings, site.engine)
    assert [(o.status, o.new) for o in report.sources] == [("stored", 87)]
    assert [s.status for s in server.requests("/flaky")] == [500, 200]


def test_exhausted_retries_fail_the_source_and_a_success_heals_it(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/down", Reply(503), Reply(503), Reply(503), Reply(body=BODY))
    site = site_for([{"name": "down", "url": url}], retries=2)
    report = run_fetch(site.settings, site.engine)
    assert report.sources[0].status == "failed"
    assert report.sources[0].detail == "HTTP 503 Service Unavailable after 3 tries"
    assert len(server.requests("/down")) == 3
    state = state_of(site, "down")
    assert state.last_error == report.sources[0].detail
    assert state.failing_since is not None and state.last_success_at is None
    assert site.dumps() == 0
    healed = run_fetch(site.settings, site.engine)
    assert healed.sources[0].status == "stored"
    state = state_of(site, "down")
    assert state.last_error == "" and state.failing_since is None


def test_a_404_is_not_retried(site_for: SiteFor, server: SourceServer) -> None:
    url = server.route("/gone", Reply(404, b"no"))
    site = site_for([{"name": "gone", "url": url}])
    report = run_fetch(site.settings, site.engine)
    assert report.sources[0].detail == "HTTP 404 Not Found"
    assert len(server.requests("/gone")) == 1


def test_a_429_waits_for_retry_after(site_for: SiteFor, server: SourceServer) -> None:
    url = server.route("/busy", Reply(429, headers={"Retry-After": "1"}), Reply(body=BODY))
    site = site_for([{"name": "busy", "url": url}])
    report = run_fetch(site.settings, site.engine)
    assert report.sources[0].status == "stored"
    first, second = server.requests("/busy")
    assert second.started - first.ended >= 1.0


@pytest.mark.slow
def test_a_retry_after_over_the_cap_ends_the_poll_at_once(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/later", Reply(503, headers={"Retry-After": "3600"}), Reply(body=BODY))
    site = site_for([{"name": "later", "url": url}])
    report = run_fetch(site.settings, site.engine)
    assert report.sources[0].status == "failed"
    assert "asked to wait 3600 s" in report.sources[0].detail
    assert len(server.requests("/later")) == 1


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = datetime(2024, 3, 14, 6, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120
    assert retry_after_seconds("Thu, 14 Mar 2024 06:01:30 GMT", now=now) == 90
    assert retry_after_seconds("Thu, 14 Mar 2024 05:00:00 GMT", now=now) == 0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds(None, now=now) is None


def test_a_hanging_server_times_out_and_the_other_source_still_succeeds(
    site_for: SiteFor, server: SourceServer
) -> None:
    hang = server.route("/hang", Reply(hang=True))
    good = server.route("/good", Reply(body=BODY))
    site = site_for(
        [{"name": "hang", "url": hang}, {"name": "good", "url": good}],
        timeout_seconds=0.3,
        retries=1,
    )
    started = time.monotonic()
    report = run_fetch(site.settings, site.engine)
    assert time.monotonic() - started < 5
    hung, fine = report.sources
    assert hung.status == "failed" and hung.detail == "timed out after 0.3 s after 2 tries"
    assert (fine.status, fine.new) == ("stored", 87)
    assert state_of(site, "hang").last_error.startswith("timed out")


def test_a_server_trickling_bytes_meets_the_deadline(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/slow", Reply(body=BODY, piece_delay=0.05))
    site = site_for([{"name": "slow", "url": url}], timeout_seconds=1.0, deadline_seconds=0.5)
    started = time.monotonic()
    report = run_fetch(site.settings, site.engine)
    assert time.monotonic() - started < 3
    assert report.sources[0].detail == "timed out: the response took over 0.5 s"
    assert site.dumps() == 0


@pytest.mark.parametrize("length", [True, False])
def test_an_oversized_answer_is_refused(
    site_for: SiteFor, server: SourceServer, length: bool
) -> None:
    url = server.route("/big", Reply(body=BODY, length=length))
    site = site_for([{"name": "big", "url": url}], max_bytes=10_000)
    report = run_fetch(site.settings, site.engine)
    assert (report.sources[0].status, report.sources[0].detail) == (
        "failed",
        "response over 10000 bytes",
    )
    assert len(server.requests("/big")) == 1  # no retry
    assert site.dumps() == 0 and site.papers() == 0


def test_sources_on_one_host_are_fetched_one_at_a_time_and_spaced(
    site_for: SiteFor, server: SourceServer
) -> None:
    for path in ("/a", "/b", "/c", "/d"):
        server.route(path, Reply(body=BODY))
    sources = [{"name": p.strip("/"), "url": server.url(p)} for p in ("/a", "/b", "/c", "/d")]
    site = site_for(sources, spacing_seconds=0.3)
    report = run_fetch(site.settings, site.engine, ["a", "b"])
    assert [o.status for o in report.sources] == ["stored", "already ingested"]
    # Two runs at once (two daemon jobs) sharing the runtime's gate.
    gate = host_gate(site.engine, site.settings.fetching)
    threads = [
        threading.Thread(
            target=run_fetch, args=(site.settings, site.engine, [name]), kwargs={"gate": gate}
        )
        for name in ("c", "d")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.max_active == 1
    # Each request starts at least the spacing after the previous one ended, whichever run
    # (and gate) sent it: the turns are the database's.
    seen = sorted(server.seen, key=lambda s: s.started)
    assert len(seen) == 4
    for before, after in itertools.pairwise(seen):
        assert after.started - before.ended >= 0.3 - SLACK


def test_an_unparseable_answer_is_quarantined_with_its_reason(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route(
        "/junk", Reply(body=b"<html>maintenance</html>", headers={"Content-Type": "text/html"})
    )
    site = site_for([{"name": "junk", "url": url}], retries=0)
    report = run_fetch(
        site.settings, site.engine, clock=lambda: datetime(2024, 3, 14, 6, 0, tzinfo=UTC)
    )
    outcome = report.sources[0]
    assert outcome.status == "quarantined" and report.failed == [outcome]
    quarantine = site.settings.folder("quarantine")
    assert sorted(p.name for p in quarantine.iterdir()) == [
        "junk-20240314T060000Z.txt",
        "junk-20240314T060000Z.txt.reason",
    ]
    assert (quarantine / "junk-20240314T060000Z.txt").read_bytes() == b"<html>maintenance</html>"
    reason = (quarantine / "junk-20240314T060000Z.txt.reason").read_text()
    assert reason.startswith(f"junk ({url}): ") and "date line" in reason
    assert site.dumps() == 0
    state = state_of(site, "junk")
    assert "date line" in state.last_error and state.failing_since is not None


def test_a_local_path_source_is_read_without_http(site_for: SiteFor, tmp_path: Path) -> None:
    dump = tmp_path / "today.txt"
    dump.write_bytes(BODY)
    site = site_for(
        [
            {"name": "local", "path": str(dump)},
            {"name": "missing", "path": str(tmp_path / "nope.txt")},
        ]
    )
    report = run_fetch(site.settings, site.engine)
    assert [(o.status, o.new) for o in report.sources] == [("stored", 87), ("failed", 0)]
    assert "cannot read" in report.sources[1].detail
    assert run_fetch(site.settings, site.engine, ["local"]).sources[0].status == "already ingested"


def test_an_unknown_name_is_refused_before_anything_is_fetched(
    site_for: SiteFor, server: SourceServer
) -> None:
    site = site_for([{"name": "cl", "url": server.route("/cl", Reply(body=BODY))}])
    with pytest.raises(NotFoundError, match="no source named 'nope'"):
        run_fetch(site.settings, site.engine, ["cl", "nope"])
    assert server.seen == []


def test_failing_since_stays_at_the_first_failure(site_for: SiteFor, server: SourceServer) -> None:
    site = site_for([{"name": "down", "url": server.route("/down", Reply(404))}])
    first = datetime(2024, 3, 14, 6, 0, tzinfo=UTC)
    run_fetch(site.settings, site.engine, clock=lambda: first)
    run_fetch(site.settings, site.engine, clock=lambda: first + timedelta(hours=2))
    state = state_of(site, "down")
    assert store.aware(state.failing_since) == first
    assert store.aware(state.last_attempt_at) == first + timedelta(hours=2)


FORMATS = Path(__file__).resolve().parent / "fixtures" / "sources"


def test_real_formats_an_empty_day_and_an_error_feed(
    site_for: SiteFor, server: SourceServer
) -> None:
    rss = server.route("/rss", Reply(body=(FORMATS / "arxiv-rss.xml").read_bytes()))
    hf = server.route(
        "/hf",
        Reply(
            body=(FORMATS / "hf-empty.json").read_bytes(),
            headers={"Content-Type": "application/json"},
        ),
    )
    error = server.route(
        "/error",
        Reply(
            body=(FORMATS / "arxiv-rss-error.xml").read_bytes(),
            headers={"Content-Type": "application/rss+xml"},
        ),
    )
    site = site_for(
        [
            {"name": "rss", "url": rss, "format": "arxiv-rss"},
            {"name": "hf", "url": hf},  # auto: detected
            {"name": "error", "url": error, "format": "arxiv-rss"},
        ]
    )
    report = run_fetch(site.settings, site.engine, clock=lambda: datetime(2024, 3, 14, tzinfo=UTC))
    rss_outcome, hf_outcome, error_outcome = report.sources
    assert rss_outcome.status == "stored" and rss_outcome.new > 0
    assert (hf_outcome.status, hf_outcome.papers, hf_outcome.failed) == ("empty day", 0, False)
    assert error_outcome.status == "quarantined" and "Bad archive" in error_outcome.detail
    assert site.dumps() == 1  # the empty day and the error feed store nothing
    with read_scope(site.engine) as session:
        assert session.exec(select(Dump)).one().format == "arxiv-rss"
    empty = state_of(site, "hf")
    assert empty.last_paper_count == 0 and empty.failing_since is None and empty.last_error == ""
    kept = site.settings.folder("quarantine") / "error-20240314T000000Z.xml"
    assert kept.read_bytes() == (FORMATS / "arxiv-rss-error.xml").read_bytes()
    assert "Bad archive" in kept.with_name(kept.name + ".reason").read_text()
