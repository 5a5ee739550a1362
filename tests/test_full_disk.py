"""A full disk is an outcome, not a crash: the digest in hand waits for a retry with the OS error
as its reply, the run pauses, `digestd send` writes one line with a hint and exits with a code
README lists, and once space returns every subscriber gets their digest exactly once.

Where the tests run as root (CI does), the outbox folder or the database lives on a real
size-limited file system (a 4 MB tmpfs) filled up by the test; elsewhere the same scenario is
driven by an injected ENOSPC at digestd's own write seams. Each test names which one it used
(its id, its assertion messages, its output); TEST_FULL_DISK=injected forces the injected one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import feeds as feeds_module
from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.errors import StorageError
from digestd.jobs import send_record
from digestd.jobs.senders import message_builder
from digestd.models import Delivery, Subscriber
from digestd.runtime import Runtime
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
PEOPLE = 8
QUERY = "oracle OR sql OR model OR learning OR language"
THRESHOLD = 3


@cache
def can_mount_tmpfs() -> bool:
    """Whether this process may mount a tmpfs (root, with the right to mount)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as folder:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder], capture_output=True
        )
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", folder], check=True)
    return True


# TEST_FULL_DISK=injected runs the injected variant where a tmpfs could be mounted too.
INJECTED = os.environ.get("TEST_FULL_DISK") == "injected" or not can_mount_tmpfs()
DISK = "injected ENOSPC" if INJECTED else "tmpfs"


@dataclasses.dataclass
class SmallDisk:
    """A folder on a nearly full disk: a real tmpfs, or one whose fullness is injected."""

    kind: str
    path: Path

    def fill(self, *, leave: int) -> None:
        """Fill the tmpfs up to ``leave`` bytes free (an injected disk is filled by the
        launcher of the command run on it)."""
        if self.kind == "tmpfs":
            stats = os.statvfs(self.path)
            free = stats.f_bavail * stats.f_frsize
            (self.path / "filler").write_bytes(b"\0" * max(free - leave, 0))

    def free_space(self) -> None:
        """Space returns: the operator deleted something."""
        (self.path / "filler").unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    path = tmp_path / "small"
    path.mkdir()
    print(f"full disk by {DISK}")
    if DISK != "tmpfs":
        yield SmallDisk(DISK, path)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], check=True)
    try:
        yield SmallDisk(DISK, path)
    finally:
        subprocess.run(["umount", str(path)], check=True)


# Run `digestd` with a disk made full at digestd's own write seams: the .eml writer refuses
# every file after the first TEST_OUTBOX_ROOM ones; with TEST_DATABASE_FULL every statement that
# would make the database grow fails as SQLite fails on a full disk.
INJECTING_LAUNCHER = """
import errno, os, sqlite3, sys
import sqlalchemy as sa
import digestd.db, digestd.deliver

room = os.environ.get("TEST_OUTBOX_ROOM")
if room is not None:
    write_atomic = digestd.deliver.write_atomic
    left = [int(room)]

    def full_after_room(path, data, **options):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        left[0] -= 1
        write_atomic(path, data, **options)

    digestd.deliver.write_atomic = full_after_room

if os.environ.get("TEST_DATABASE_FULL"):
    make_engine = digestd.db.make_engine

    def full(conn, cursor, statement, *rest):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode, error.sqlite_errorname = sqlite3.SQLITE_FULL, "SQLITE_FULL"
            raise error

    def full_engine(url, **options):
        engine = make_engine(url, **options)
        sa.event.listen(engine, "before_cursor_execute", full)
        return engine

    digestd.db.make_engine = full_engine
    import digestd.cli.common
    digestd.cli.common.make_engine = full_engine

if os.environ.get("TEST_QUARANTINE_FULL"):
    import digestd.jobs.ingest_job

    def no_room(path, reason, **options):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(options["folder"]))

    digestd.jobs.ingest_job.quarantine_file = no_room

from digestd.cli import main
main(sys.argv[1:])
"""


def digestd(
    config_file: Path, *args: str, injected: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``digestd --config CONFIG ARGS`` in a process of its own; with ``injected``, through the
    launcher that makes a disk full at the write seams."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    start = [sys.executable, "-c", INJECTING_LAUNCHER] if injected else [sys.executable, "-m"]
    command = [*start, *([] if injected else ["digestd"]), "--config", str(config_file), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env={**env, **(injected or {})}, timeout=300
    )


def configure(config_file: Path, **sections: dict[str, object]) -> Settings:
    """Merge ``sections`` into the test's config file; the settings it now gives."""
    config = tomllib.loads(config_file.read_text(encoding="utf-8"))
    for section, keys in sections.items():
        config.setdefault(section, {}).update(keys)
    config_file.write_text(
        "".join(
            f"[{section}]\n"
            + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
            for section, keys in config.items()
        ),
        encoding="utf-8",
    )
    return load_settings(config_file, environ={})


def stock(settings: Settings, sample_path: Path) -> list[str]:
    """A database with the sample's papers and PEOPLE subscribers due now; every connection is
    closed after (so SQLite's write-ahead log is folded back in, as after any command)."""
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [sample_path])
    addresses = [f"reader{n}@example.org" for n in range(PEOPLE)]
    with session_scope(engine) as session:
        for address in addresses:
            store.add_subscriber(
                session,
                address,
                queries=[QUERY],
                send_hour=0,
                now=datetime.now(UTC) - timedelta(days=1),
            )
    engine.dispose()
    return addresses


def digest_size(settings: Settings) -> int:
    """How many bytes the first subscriber's digest takes as an .eml file."""
    engine = make_engine(settings.database_url)
    first = jobs.prepare_digests(settings, engine, now=jobs.utc_now(), ignore_schedule=True)[0]
    message, _subject = message_builder(Runtime(settings, engine))(first)
    engine.dispose()
    return len(message.data)


def outbox_rows(settings: Settings) -> dict[str, Delivery]:
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        found = session.exec(
            select(Delivery, Subscriber.email).join(Subscriber).order_by(Delivery.id)
        ).all()
    engine.dispose()
    return {email: delivery for delivery, email in found}


def mailed(outbox: Path) -> Counter[tuple[str, str]]:
    """(recipient, Message-ID) of every .eml in ``outbox``, counted."""
    seen: Counter[tuple[str, str]] = Counter()
    for path in outbox.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        seen[(str(message["To"]).split("<")[-1].rstrip(">"), str(message["Message-ID"]))] += 1
    return seen


def assert_everyone_mailed_once(settings: Settings, outbox: Path, people: list[str]) -> None:
    rows = outbox_rows(settings)
    assert sorted(rows) == sorted(people) and {d.status for d in rows.values()} == {"sent"}
    received = mailed(outbox)
    assert sorted(to for to, _ in received) == sorted(people), "each subscriber exactly once"
    assert set(received.values()) == {1}
    assert {mid for _, mid in received} == {d.message_id for d in rows.values()}


def one_line(stderr: str, kind: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), f"[{kind}] stderr is not one line: {stderr}"
    assert "Traceback" not in stderr and "Background on this error" not in stderr
    return lines[0]


@pytest.mark.parametrize("disk", [DISK])
@pytest.mark.slow
def test_a_full_outbox_disk_pauses_the_run_then_everyone_gets_one_digest(
    small_disk: SmallDisk, config_file: Path, sample_path: Path, disk: str
) -> None:
    outbox = small_disk.path / "outbox"
    settings = configure(
        config_file,
        paths={"outbox": str(outbox)},
        delivery={"error_threshold": THRESHOLD, "retry_minutes": 0.0001, "min_free_mb": 0.0},
    )
    people = stock(settings, sample_path)
    # Room for two digests and a half, measured on the digest the run makes, no more.
    small_disk.fill(leave=int(2.5 * digest_size(settings)))
    injected = {"TEST_OUTBOX_ROOM": "2"} if disk != "tmpfs" else None

    first = digestd(config_file, "send", "--now", injected=injected)

    assert first.returncode == 3, f"[{disk}] {first.stderr}"
    line = one_line(first.stderr, disk)
    no_space = f"cannot write {outbox}: [Errno 28] No space left on device"
    assert line.startswith(f"error: send paused: {THRESHOLD} failures in a row, the last: "), line
    assert f"{no_space} (free space there; the " in line and "wait for the next run)" in line, line
    rows = outbox_rows(settings)
    statuses = Counter(d.status for d in rows.values())
    assert statuses["retry"] == THRESHOLD, f"[{disk}] {statuses}"
    assert statuses["sent"] >= 1 and sum(statuses.values()) == PEOPLE, f"[{disk}] {statuses}"
    # The digests in hand wait for their retry with the OS error as reply.
    assert {d.reply for d in rows.values() if d.status == "retry"} == {no_space}
    waiting = PEOPLE - statuses["sent"]
    assert f"the {waiting} digests not sent wait" in line
    # What was written is whole, and nothing half-written is left behind.
    assert len(mailed(outbox)) == statuses["sent"]
    assert [p.name for p in outbox.iterdir() if not p.name.endswith(".eml")] == []

    small_disk.free_space()
    time.sleep(0.1)  # the retries are due
    second = digestd(config_file, "send", "--now")

    assert second.returncode == 0, f"[{disk}] {second.stderr}"
    assert second.stderr.strip() == ""
    assert_everyone_mailed_once(settings, outbox, people)


@pytest.mark.parametrize("disk", [DISK])
@pytest.mark.slow
def test_a_full_database_disk_is_one_line_exit_4_then_everyone_gets_one_digest(
    small_disk: SmallDisk, config_file: Path, sample_path: Path, tmp_path: Path, disk: str
) -> None:
    database = small_disk.path / "digestd.db"
    outbox = tmp_path / "roomy-outbox"
    settings = configure(
        config_file,
        database={"url": f"sqlite:///{database}"},
        paths={"outbox": str(outbox)},
        delivery={"min_free_mb": 0.0},
    )
    people = stock(settings, sample_path)
    # Room for SQLite's shared-memory index (32 kB), none for the database to grow.
    small_disk.fill(leave=32 * 1024)
    injected = {"TEST_DATABASE_FULL": "1"} if disk != "tmpfs" else None

    first = digestd(config_file, "send", "--now", injected=injected)

    assert first.returncode == 4, f"[{disk}] {first.stderr}"
    line = one_line(first.stderr, disk)
    assert line == (
        f"error: send paused: cannot put digests into the outbox: the database {database} is "
        f"full: no space left on its disk (free space on the disk that holds {small_disk.path}; "
        f"nothing stored is lost; the {PEOPLE} digests not sent wait for the next run)"
    ), f"[{disk}] {line}"
    assert not outbox.exists() or list(outbox.iterdir()) == []
    # Any other command that writes says the same in one line, with the same exit code.
    added = digestd(
        config_file, "subscriber", "add", "late@example.org", "-q", "sql", injected=injected
    )
    assert added.returncode == 4, f"[{disk}] {added.stderr}"
    assert one_line(added.stderr, disk).startswith(f"error: the database {database} is full")

    small_disk.free_space()
    second = digestd(config_file, "send", "--now")

    assert second.returncode == 0, f"[{disk}] {second.stderr}"
    assert_everyone_mailed_once(settings, outbox, people)


# A digest the server (here: the outbox folder) accepted while the database cannot record it.
# The moment "sent" is recorded cannot be hit reliably on a real full disk (SQLite's write-ahead
# log reuses its own space, so a small update may still fit), so the database's error is
# injected at digestd's own seam, store.mark_sent, exactly as SQLite reports a full disk.


def disk_full_error() -> sa.exc.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    return sa.exc.OperationalError("UPDATE delivery SET status=?", ("sent",), error)


@pytest.fixture
def file_backend(config_file: Path, sample_path: Path) -> tuple[Settings, Engine, list[str]]:
    settings = configure(config_file, delivery={"min_free_mb": 0.0})
    people = stock(settings, sample_path)
    return settings, make_engine(settings.database_url), people


@pytest.mark.parametrize("space_returns", [True, False], ids=["space returns", "it does not"])
def test_a_sent_digest_the_database_cannot_record_holds_the_run(
    file_backend: tuple[Settings, Engine, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    space_returns: bool,
) -> None:
    settings, engine, people = file_backend
    outbox = settings.folder("outbox")
    monkeypatch.setattr(send_record, "RECORD_SENT_SECONDS", 2.0)
    mark_sent = store.mark_sent
    full = threading.Event()
    calls: list[int] = []
    space_back_at: list[float] = []

    def space_returns_now() -> None:
        space_back_at.append(time.time())
        full.clear()

    def mark_sent_unless_full(session, delivery_id, **options):  # type: ignore[no-untyped-def]
        calls.append(delivery_id)
        if len(calls) == 3:  # the third digest finds the disk full
            full.set()
            if space_returns:
                threading.Timer(0.8, space_returns_now).start()
        if full.is_set():
            raise disk_full_error()
        return mark_sent(session, delivery_id, **options)

    monkeypatch.setattr(store, "mark_sent", mark_sent_unless_full)
    caplog.set_level(logging.INFO, logger="digestd")
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))

    if space_returns:
        # The run held until "sent" could be recorded, then went on: nothing lost or doubled,
        # and no digest was started while the third could not be recorded.
        assert report.record_error is None and not report.paused
        assert report.count("sent") == PEOPLE
        written = sorted(p.stat().st_mtime for p in outbox.glob("*.eml"))
        assert len(written) == PEOPLE and written[3] >= space_back_at[0] > written[2]
        monkeypatch.setattr(store, "mark_sent", mark_sent)
        assert_everyone_mailed_once(settings, outbox, people)
        return
    # It still cannot be recorded: the run pauses, the digest stays "sending", and the next run
    # sends it again with the same Message-ID, as after a crash.
    assert isinstance(report.record_error, StorageError)
    message = send_record.pause_message(report)
    third = people[2]
    assert message.startswith(f"send paused: cannot record the digest to {third} as sent: ")
    assert "is full: no space left on its disk" in message
    rows = outbox_rows(settings)
    assert rows[third].status == "sending"
    assert Counter(d.status for d in rows.values()) == {"sent": 2, "sending": 1, "planned": 5}
    said = [r.getMessage() for r in caplog.records if "recorded as sent" in r.getMessage()]
    assert len(said) == 1 and rows[third].message_id in said[0] and "same Message-ID" in said[0]
    monkeypatch.setattr(store, "mark_sent", mark_sent)

    again = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))

    assert again.resent == 1 and again.record_error is None
    received = mailed(outbox)
    assert received[(third, rows[third].message_id)] == 2  # the same message, twice
    assert sorted(to for to, _ in received.elements()) == sorted([*people, third])
    assert {d.status for d in outbox_rows(settings).values()} == {"sent"}


def test_a_digest_the_database_cannot_record_as_sending_is_not_sent(
    file_backend: tuple[Settings, Engine, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine, people = file_backend
    outbox = settings.folder("outbox")
    mark_sending = store.claim_for_sending
    calls: list[int] = []

    def mark_sending_until_full(session, delivery_id, **options):  # type: ignore[no-untyped-def]
        calls.append(delivery_id)
        if len(calls) >= 3:  # the database is full from the third digest on
            raise disk_full_error()
        return mark_sending(session, delivery_id, **options)

    monkeypatch.setattr(store, "claim_for_sending", mark_sending_until_full)
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))

    assert isinstance(report.record_error, StorageError)
    assert report.paused.startswith(f"cannot record the digest to {people[2]} as sending: ")
    assert len(calls) == 3  # the run paused at once: no other digest was tried
    assert Counter(d.status for d in outbox_rows(settings).values()) == {"sent": 2, "planned": 6}
    assert len(mailed(outbox)) == 2
    monkeypatch.setattr(store, "claim_for_sending", mark_sending)
    asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert_everyone_mailed_once(settings, outbox, people)


@pytest.mark.slow
def test_a_disk_short_of_its_reserve_pauses_the_run_before_anything_is_sent(
    config_file: Path, sample_path: Path
) -> None:
    settings = configure(config_file, delivery={"min_free_mb": 1e12})  # more than any disk has
    stock(settings, sample_path)
    result = digestd(config_file, "send", "--now")
    assert result.returncode == 3, result.stderr
    line = one_line(result.stderr, "reserve")
    assert line.startswith("error: send paused: only ") and "MB free on the disk that holds" in line
    assert f"(free space there, or lower [delivery] min_free_mb; the {PEOPLE} digests" in line
    assert outbox_rows(settings) == {}
    outbox = settings.folder("outbox")
    assert not outbox.exists() or not any(outbox.iterdir())


@pytest.mark.parametrize("disk", ["injected EROFS" if INJECTED else "tmpfs"])
def test_a_read_only_data_folder_is_one_line_exit_4(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: str
) -> None:
    assert cli("init").code == 0
    feeds = tmp_path / "data" / "feeds"
    if disk == "tmpfs":
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(feeds)], check=True
        )
    else:

        def read_only(path: Path, data: bytes, **options: object) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        monkeypatch.setattr(feeds_module, "write_atomic", read_only)
    try:
        result = cli("feeds")
    finally:
        if disk == "tmpfs":
            subprocess.run(["umount", str(feeds)], check=True)
    assert result.code == 4, f"[{disk}] {result.err}"
    line = one_line(result.err, disk)
    assert line.startswith(f"error: cannot write {feeds}/"), line
    assert ".digestd." not in line  # the file it was writing, not its temporary name
    assert "[Errno 30] Read-only file system (the file system is mounted read-only" in line


@pytest.mark.parametrize("disk", [DISK])
@pytest.mark.slow
def test_ingest_into_a_full_database_is_one_line_exit_4_and_the_file_waits(
    small_disk: SmallDisk, config_file: Path, sample_path: Path, tmp_path: Path, disk: str
) -> None:
    database = small_disk.path / "digestd.db"
    settings = configure(config_file, database={"url": f"sqlite:///{database}"})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    engine.dispose()
    inbox = settings.folder("inbox")
    inbox.mkdir(parents=True)
    for name, day in (("a.txt", b"Mar 15"), ("b.txt", b"Mar 16")):
        (inbox / name).write_bytes(sample_path.read_bytes().replace(b"Mar 14", day))
        os.utime(inbox / name, (time.time() - 3600, time.time() - 3600))
    small_disk.fill(leave=32 * 1024)
    injected = {"TEST_DATABASE_FULL": "1"} if disk != "tmpfs" else None

    first = digestd(config_file, "ingest", injected=injected)

    assert first.returncode == 4, f"[{disk}] {first.stderr}"
    line = one_line(first.stderr, disk)
    assert line == (
        f"error: ingest stopped: the database {database} is full: no space left on its disk "
        f"(free space on the disk that holds {small_disk.path}; nothing stored is lost; "
        "the files not ingested are left as they are)"
    ), f"[{disk}] {line}"
    assert "INSERT" not in first.stdout and "[SQL" not in first.stdout
    assert sorted(p.name for p in inbox.iterdir()) == ["a.txt", "b.txt"]  # both wait

    small_disk.free_space()
    second = digestd(config_file, "ingest")
    assert second.returncode == 0, f"[{disk}] {second.stderr}"
    assert "87 new, 87 already known, 0 quarantined" in second.stdout


@pytest.mark.parametrize("disk", [DISK])
@pytest.mark.slow
def test_ingest_with_a_full_quarantine_disk_stops_at_that_file(
    small_disk: SmallDisk, config_file: Path, sample_path: Path, disk: str
) -> None:
    quarantine = small_disk.path / "quarantine"
    settings = configure(config_file, paths={"quarantine": str(quarantine)})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    engine.dispose()
    inbox = settings.folder("inbox")
    inbox.mkdir(parents=True)
    (inbox / "a-broken.txt").write_bytes(b"no date line here\n\njust words\n")
    (inbox / "b-good.txt").write_bytes(sample_path.read_bytes())
    for path in inbox.iterdir():
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    small_disk.fill(leave=0)
    injected = {"TEST_QUARANTINE_FULL": "1"} if disk != "tmpfs" else None

    first = digestd(config_file, "ingest", injected=injected)

    assert first.returncode == 4, f"[{disk}] {first.returncode} {first.stderr}"
    line = one_line(first.stderr, disk)
    assert line.startswith("error: ingest stopped: cannot write "), f"[{disk}] {line}"
    assert "No space left on device" in line and "free space there" in line, f"[{disk}] {line}"
    # Nothing half done: both files wait in the inbox, no reason without its file.
    assert sorted(p.name for p in inbox.iterdir()) == ["a-broken.txt", "b-good.txt"]
    assert not quarantine.exists() or list(quarantine.glob("*.reason")) == []

    small_disk.free_space()
    second = digestd(config_file, "ingest")
    assert second.returncode == 2, f"[{disk}] {second.stderr}"  # a file was quarantined
    assert "87 new, 0 already known, 1 quarantined" in second.stdout
    assert sorted(p.name for p in quarantine.iterdir()) == ["a-broken.txt", "a-broken.txt.reason"]


def test_the_daemon_logs_the_pause_in_one_line_and_goes_on(
    config_file: Path,
    sample_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from digestd import deliver
    from digestd.daemon import send_due

    settings = configure(config_file, delivery={"error_threshold": THRESHOLD, "min_free_mb": 0.0})
    stock(settings, sample_path)
    engine = make_engine(settings.database_url)

    def no_space(path: Path, data: bytes, **options: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(deliver, "write_atomic", no_space)  # injected: the outbox disk is full
    caplog.set_level(logging.INFO, logger="digestd")
    send_due(settings, engine)
    paused = [r for r in caplog.records if "send paused" in r.getMessage()]
    assert len(paused) == 1 and not paused[0].exc_info
    outbox = settings.folder("outbox")
    assert paused[0].getMessage() == (
        f"send paused: {THRESHOLD} failures in a row, the last: cannot write {outbox}: "
        "[Errno 28] No space left on device (free space there; the 8 digests not sent wait for "
        "the next run); the daemon goes on"
    )
    assert not any(r.exc_info for r in caplog.records)
