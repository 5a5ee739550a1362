"""Readers never wait behind writers: with another process holding SQLite's write lock for longer
than the busy timeout, the commands that only read answer at once, the daemon starts, and a
command that writes fails after the busy timeout with one line saying another process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CliResult

BUSY_TIMEOUT_SECONDS = 10  # how long digestd waits for SQLite's write lock (README)

HOLDER = """
import sys
from datetime import UTC, datetime
from digestd import store
from digestd.db import make_engine, session_scope
engine = make_engine(sys.argv[1])
with session_scope(engine) as session:  # BEGIN IMMEDIATE: the write lock, until the end
    store.add_topic(session, "held", query="never committed", now=datetime.now(UTC))
    session.flush()
    print("holding", flush=True)
    sys.stdin.readline()  # held until the test is done, however slow the machine
"""


@dataclass
class Ran:
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float


@pytest.fixture
def digestd(config_file: Path) -> Callable[..., Ran]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}

    def run(*args: str) -> Ran:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "digestd", "--config", str(config_file), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return Ran(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    return run


@pytest.fixture
def held_write(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the database's write lock (an uncommitted insert)."""
    database_url = f"sqlite:///{tmp_path / 'data' / 'digestd.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.fixture
def stocked(cli: Callable[..., CliResult], sample_path: Path) -> None:
    """An initialised database with papers, a topic and a subscriber."""
    assert cli("init").code == 0
    assert cli("ingest", str(sample_path)).code == 0
    assert cli("topic", "add", "oracle", "--query", "oracle").code == 0
    added = cli("subscriber", "add", "ada@example.org", "--query", "sql", "--topic", "oracle")
    assert added.code == 0


READERS: dict[tuple[str, ...], str] = {
    ("subscriber", "list", "--json"): "ada@example.org",
    ("subscriber", "show", "ada@example.org"): "oracle",
    ("topic", "list"): "oracle",
    ("stats",): "subscribers",
    ("deliveries",): "0 shown",
    ("match", "oracle"): "papers match",
    ("preview", "ada@example.org"): "Subject:",
    ("send", "--dry-run", "--now"): "1 would be sent",
}


@pytest.mark.slow
def test_readers_answer_while_another_process_holds_a_long_write(
    stocked: None,
    held_write: subprocess.Popen[str],
    digestd: Callable[..., Ran],
    tmp_path: Path,
) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        writer = pool.submit(digestd, "subscriber", "add", "bob@example.org", "--query", "sql")
        readers = list(pool.map(lambda args: digestd(*args), READERS))
        wrote = writer.result()
    for ran in readers:
        assert ran.code == 0, f"{ran.args}: {ran.err}"
        assert READERS[ran.args] in ran.out, f"{ran.args}: {ran.out}"
        assert ran.err.strip() == "", f"{ran.args}: {ran.err}"
    # A reader that asked for the write lock would have failed (exit 5) after the busy
    # timeout: the lock was held all along.
    assert held_write.poll() is None, "the write lock was released during the test"
    people = json.loads(readers[0].out)
    assert [p["email"] for p in people] == ["ada@example.org"]
    # The write waited the busy timeout, then said who is in the way: one line, exit code 5.
    assert wrote.code == 5, wrote.err
    assert wrote.seconds >= BUSY_TIMEOUT_SECONDS - 0.5
    lines = wrote.err.strip().splitlines()
    assert len(lines) == 1, wrote.err
    assert lines[0].startswith("error: another digestd process is writing the database")
    assert str(tmp_path / "data" / "digestd.db") in lines[0]
    assert "try again" in lines[0] and "[database] url" not in lines[0]
    assert "Background on this error" not in wrote.err and "Traceback" not in wrote.err


@pytest.mark.slow
def test_the_daemon_starts_while_another_process_holds_a_long_write(
    stocked: None, held_write: subprocess.Popen[str], config_file: Path
) -> None:
    # No migration is pending: the start-up check only reads, so the daemon is up at once.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    env["DIGESTD_SCHEDULE_INGEST_INTERVAL_MINUTES"] = "60"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "digestd", "--config", str(config_file), "run"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert daemon.stderr is not None
        line = daemon.stderr.readline()
        while line and "digestd running" not in line:
            line = daemon.stderr.readline()
        # Had the start-up check asked for the write lock, the daemon would have stopped with
        # an error after the busy timeout instead.
        assert "digestd running" in line
        assert held_write.poll() is None
    finally:
        # Not SIGTERM: that waits for the first ingest job, itself waiting for the lock.
        daemon.kill()
        daemon.communicate(timeout=60)
