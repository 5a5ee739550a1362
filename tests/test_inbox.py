"""The inbox and folders as other processes use them at the same time: `digestd ingest` waits for
a file still being written (as the daemon does), and a file that vanishes between listing and
reading is skipped, leaving nothing in quarantine."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from digestd.ingest import quarantine_file
from digestd.jobs import ingest_job
from tests.conftest import CliResult

Cli = Callable[..., CliResult]


def settled_long_ago(*paths: Path) -> None:
    then = time.time() - 3600
    for path in paths:
        os.utime(path, (then, then))


def chunks_of(data: bytes, count: int) -> list[bytes]:
    size = len(data) // count + 1
    return [data[i : i + size] for i in range(0, len(data), size)]


class SlowCopy(threading.Thread):
    """Writes ``data`` into ``path`` a piece at a time, like a copy over a slow link."""

    def __init__(self, path: Path, data: bytes, *, seconds: float, pieces: int = 12) -> None:
        super().__init__(daemon=True)
        self.path, self.pieces = path, chunks_of(data, pieces)
        self.pause = seconds / len(self.pieces)
        self.first_written = threading.Event()
        self.last_write_at = 0.0

    def run(self) -> None:
        with self.path.open("wb") as out:
            for n, piece in enumerate(self.pieces):
                out.write(piece)
                out.flush()
                self.last_write_at = time.monotonic()
                if n == 0:
                    self.first_written.set()
                if n < len(self.pieces) - 1:
                    time.sleep(self.pause)


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init").code == 0
    return cli


def digestd(config_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    return subprocess.run(
        [sys.executable, "-m", "digestd", "--config", str(config_file), *args],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=120,
    )


# -- a file still being written ------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_waits_for_an_inbox_file_still_being_written(
    ready: Cli, config_file: Path, tmp_path: Path, sample_path: Path
) -> None:
    data = sample_path.read_bytes()
    inbox = tmp_path / "data" / "inbox"
    copy = SlowCopy(inbox / "today.txt", data, seconds=4.0)
    copy.start()
    assert copy.first_written.wait(10)
    result = digestd(config_file, "ingest", DIGESTD_SCHEDULE_INBOX_SETTLE_SECONDS="1")
    finished = time.monotonic()
    copy.join(10)
    assert result.returncode == 0, result.stderr
    # The whole file, once writing stopped and the file stayed unchanged for the settle time.
    assert "87 new, 0 already known, 0 quarantined" in result.stdout, result.stdout
    assert finished - copy.last_write_at >= 0.9  # the settle time after the last write
    assert (tmp_path / "data" / "processed" / "today.txt").read_bytes() == data
    assert not (inbox / "today.txt").exists()
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ingest_of_a_named_file_does_not_wait(
    ready: Cli, config_file: Path, tmp_path: Path, sample_path: Path
) -> None:
    fresh = tmp_path / "fresh.txt"
    fresh.write_bytes(sample_path.read_bytes())  # changed just now
    started = time.monotonic()
    result = digestd(config_file, "ingest", str(fresh), DIGESTD_SCHEDULE_INBOX_SETTLE_SECONDS="60")
    assert result.returncode == 0, result.stderr
    assert "87 new" in result.stdout
    assert time.monotonic() - started < 30  # far less than the settle time it would wait


@pytest.mark.slow
def test_an_inbox_file_that_never_settles_is_left_for_the_next_run(
    ready: Cli, tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGESTD_SCHEDULE_INBOX_SETTLE_SECONDS", "1")
    monkeypatch.setattr("digestd.cli.pipeline.INBOX_WAIT_SECONDS", 1.0)
    inbox = tmp_path / "data" / "inbox"
    (inbox / "old.txt").write_bytes(sample_path.read_bytes())
    settled_long_ago(inbox / "old.txt")
    copy = SlowCopy(inbox / "growing.txt", b"x" * 40_000, seconds=6.0, pieces=30)
    copy.start()
    assert copy.first_written.wait(10)
    started = time.monotonic()
    result = ready("ingest")
    waited = time.monotonic() - started
    copy.join(10)
    assert result.code == 0, result.err
    assert "87 new" in result.out and "growing.txt" not in result.out.split("87 new")[0]
    assert "still being written, left for the next run: growing.txt" in result.out
    assert waited >= 1.5  # the settle time plus the extra wait (the files show it gave up)
    assert (inbox / "growing.txt").exists() and not (inbox / "old.txt").exists()
    assert not list((tmp_path / "data" / "quarantine").iterdir())


# -- a file that vanishes --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["inbox", "named folder"])
def test_a_file_that_vanishes_before_it_is_read_is_skipped(
    ready: Cli,
    tmp_path: Path,
    sample_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    folder = tmp_path / "data" / "inbox" if where == "inbox" else tmp_path / "drop"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a-good.txt").write_bytes(sample_path.read_bytes())
    (folder / "b-gone.txt").write_bytes(b"\x00 would be quarantined, were it still there")
    settled_long_ago(folder / "a-good.txt", folder / "b-gone.txt")
    read = ingest_job.read_dump_file

    def taken_away_first(path: Path, **options: object) -> object:
        if path.name == "b-gone.txt":
            path.unlink()  # another process moves it away between the listing and the reading
        return read(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_job, "read_dump_file", taken_away_first)
    caplog.set_level(logging.WARNING, logger="digestd")
    result = ready("ingest") if where == "inbox" else ready("ingest", str(folder))
    assert result.code == 0, result.out + result.err
    assert "87 new, 0 already known, 0 quarantined" in result.out
    assert "could not be ingested" not in result.out
    assert "vanished" in result.out
    quarantine = tmp_path / "data" / "quarantine"
    assert not quarantine.exists() or list(quarantine.iterdir()) == []
    skipped = [r.getMessage() for r in caplog.records if "b-gone.txt" in r.getMessage()]
    assert len(skipped) == 1 and "vanished" in skipped[0]


def test_a_file_that_vanishes_after_it_is_stored_stays_stored(
    ready: Cli,
    tmp_path: Path,
    sample_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = tmp_path / "data" / "inbox"
    (inbox / "today.txt").write_bytes(sample_path.read_bytes())
    settled_long_ago(inbox / "today.txt")
    move = ingest_job.move_into

    def taken_away_first(path: Path, folder: Path) -> Path:
        path.unlink()
        return move(path, folder)

    monkeypatch.setattr(ingest_job, "move_into", taken_away_first)
    caplog.set_level(logging.WARNING, logger="digestd")
    result = ready("ingest")
    assert result.code == 0 and "87 new" in result.out and "ingested" in result.out
    assert any("vanished" in r.getMessage() for r in caplog.records)
    assert ready("match", "oracle").code == 0


@pytest.mark.parametrize("keep_original", [False, True])
def test_quarantine_never_leaves_a_reason_without_its_file(
    tmp_path: Path, keep_original: bool
) -> None:
    folder = tmp_path / "quarantine"
    with pytest.raises(FileNotFoundError):
        quarantine_file(tmp_path / "gone.txt", "binary", folder=folder, keep_original=keep_original)
    assert list(folder.iterdir()) == []
    there = tmp_path / "there.txt"
    there.write_bytes(b"\x00")
    target = quarantine_file(there, "binary", folder=folder, keep_original=keep_original)
    assert sorted(p.name for p in folder.iterdir()) == ["there.txt", "there.txt.reason"]
    assert target.read_bytes() == b"\x00" and there.exists() == keep_original
