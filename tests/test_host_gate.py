"""The host gate across processes: two OS processes polling sources on one loopback host through
one SQLite file take turns (one request at a time, spaced); a crashed holder's lapsed turn does
not block; a live one elsewhere makes the poll fail after the patience; the lease's
compare-and-set on SQLite and on PostgreSQL, raced by threads."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from digestd import store
from digestd.db import read_scope, session_scope
from digestd.jobs.fetch_job import run_fetch
from digestd.models import HostLease
from digestd.sources import HostBusy, HostGate, host_gate
from tests.support.databases import engine_fixture  # noqa: F401  (the engine fixture)
from tests.support.source_server import Reply, SourceServer
from tests.support.sources_site import (  # noqa: F401  (the server and site_for fixtures)
    BODY,
    SLACK,
    SiteFor,
    server_fixture,
    site_for_fixture,
)
from tests.test_postgres import postgres_url  # noqa: F401  (a fixture)

HOST = "127.0.0.1"
SPACING = 0.3

# One `digestd fetch`-like runtime: its own engine and gate on the shared database; it polls
# the sources named once "go" arrives on stdin, so both processes start together.
POLLER = """
import json, sys
from pathlib import Path
from digestd.config import load_settings
from digestd.db import make_engine
from digestd.jobs.fetch_job import run_fetch
from digestd.sources import host_gate
settings = load_settings(Path(sys.argv[1]), environ={})
engine = make_engine(settings.database_url)
gate = host_gate(engine, settings.fetching)
print("ready", flush=True)
sys.stdin.readline()
report = run_fetch(settings, engine, sys.argv[2:], gate=gate)
print(json.dumps([[o.name, o.status, o.detail] for o in report.sources]), flush=True)
"""


@pytest.mark.slow
def test_two_processes_take_turns_at_one_host(site_for: SiteFor, server: SourceServer) -> None:
    names = {"first": ["a1", "a2", "a3"], "second": ["b1", "b2", "b3"]}
    sources = []
    for name in names["first"] + names["second"]:
        # Each answer takes a while: the other process certainly asks while one is in flight.
        reply = Reply(body=BODY, delay=0.2)
        sources.append({"name": name, "url": server.route(f"/{name}", reply)})
    site = site_for(sources, spacing_seconds=SPACING)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    pollers = [
        subprocess.Popen(
            [sys.executable, "-c", POLLER, str(site.config), *polled],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for polled in names.values()
    ]
    try:
        for poller in pollers:
            assert poller.stdout is not None and poller.stdout.readline() == "ready\n"
        for poller in pollers:
            assert poller.stdin is not None
            poller.stdin.write("go\n")
            poller.stdin.flush()
        results = [poller.communicate(timeout=60) for poller in pollers]
    finally:
        for poller in pollers:
            if poller.poll() is None:
                poller.kill()
    for poller, (out, err) in zip(pollers, results, strict=True):
        assert poller.returncode == 0, err
        statuses = {name: status for name, status, _ in json.loads(out)}
        assert set(statuses.values()) <= {"stored", "already ingested"}, out
    assert site.dumps() == 1 and site.papers() == 87

    assert server.max_active == 1
    seen = sorted(server.seen, key=lambda s: s.started)
    assert len(seen) == 6
    for before, after in itertools.pairwise(seen):
        assert after.started - before.ended >= SPACING - SLACK, (before.path, after.path)
    with read_scope(site.engine) as session:
        lease = store.host_lease(session, HOST)
    assert lease is not None and lease.holder == "" and lease.busy_until is None


def _hold(engine: Engine, *, holder: str, busy_until: datetime) -> None:
    with session_scope(engine) as session:
        session.add(HostLease(host=HOST, holder=holder, busy_until=busy_until))


def test_a_crashed_holders_lapsed_turn_does_not_block(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/cl", Reply(body=BODY))
    site = site_for([{"name": "cl", "url": url}])
    _hold(
        site.engine, holder="gone pid 1 dead", busy_until=datetime.now(UTC) - timedelta(seconds=1)
    )
    started = time.monotonic()
    report = run_fetch(site.settings, site.engine)
    assert [o.status for o in report.sources] == ["stored"]
    assert time.monotonic() - started < 5  # the turn lapses after 36 s: it was not waited for
    with read_scope(site.engine) as session:
        lease = store.host_lease(session, HOST)
    assert lease is not None and lease.holder == "" and lease.busy_until is None
    assert lease.free_at is not None


def test_a_live_turn_elsewhere_fails_the_poll_after_the_patience(
    site_for: SiteFor, server: SourceServer
) -> None:
    url = server.route("/cl", Reply(body=BODY))
    site = site_for([{"name": "cl", "url": url}])
    _hold(
        site.engine, holder="node-b pid 9 1234", busy_until=datetime.now(UTC) + timedelta(hours=1)
    )
    gate = HostGate(site.engine, spacing=0.05, lease_seconds=36, patience=0.4)
    report = run_fetch(site.settings, site.engine, gate=gate)
    assert [(o.status, o.detail) for o in report.sources] == [
        ("failed", f"no turn to ask {HOST} within 0.4 s (held by node-b pid 9 1234)")
    ]
    assert server.seen == []


def test_a_stop_ends_the_wait_for_a_turn(site_for: SiteFor) -> None:
    site = site_for([])
    _hold(site.engine, holder="other", busy_until=datetime.now(UTC) + timedelta(hours=1))
    stop = threading.Event()
    gate = host_gate(site.engine, site.settings.fetching, stop=stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(HostBusy, match="digestd is stopping"), gate.turn(HOST):
        pass
    assert time.monotonic() - started < 2


def test_the_lease_compare_and_set(engine: Engine) -> None:
    t0 = datetime(2030, 1, 1, 6, 0, tzinfo=UTC)

    def take(holder: str, at: float) -> store.TurnRefused | None:
        now = t0 + timedelta(seconds=at)
        with session_scope(engine) as session:
            return store.take_host_lease(
                session, "h", holder=holder, now=now, expires=now + timedelta(seconds=10)
            )

    def release(holder: str, free_at: float) -> bool:
        with session_scope(engine) as session:
            return store.release_host_lease(
                session, "h", holder=holder, free_at=t0 + timedelta(seconds=free_at)
            )

    assert take("a", 0) is None
    assert take("b", 1) == store.TurnRefused("a", t0 + timedelta(seconds=10), None)
    assert not release("b", 2)  # not b's turn: nothing changes
    assert take("b", 2) is not None
    assert release("a", 5)  # a's request ended; the next may start at 5
    assert take("b", 4) == store.TurnRefused("", None, t0 + timedelta(seconds=5))
    assert take("b", 5) is None
    # b crashes holding the turn: it lapses at 15, and only then may c take it.
    refused = take("c", 14.9)
    assert refused == store.TurnRefused("b", t0 + timedelta(seconds=15), t0 + timedelta(seconds=5))
    assert take("c", 15) is None
    assert not release("b", 16)  # b's late release does not end c's turn
    assert take("d", 16) is not None


def test_threads_racing_for_a_new_host_get_one_turn(engine: Engine) -> None:
    now = datetime.now(UTC)
    racers = 8
    barrier = threading.Barrier(racers)
    won: list[str] = []

    def race(holder: str) -> None:
        barrier.wait()
        with session_scope(engine) as session:
            refused = store.take_host_lease(
                session, "new.example.org", holder=holder, now=now, expires=now + timedelta(1)
            )
        if refused is None:
            won.append(holder)

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    with read_scope(engine) as session:
        lease = store.host_lease(session, "new.example.org")
    assert lease is not None and lease.holder == won[0]
