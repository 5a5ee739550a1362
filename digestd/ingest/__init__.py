"""Ingest: dump files in, ParsedDump values out; unreadable files are quarantined with a reason.

Each dump format has its own pure parser module (text -> ParsedDump) and ``formats`` detects the
format and picks the parser; this module is the file edge: it lists dump files and says when one
has settled, reads and parses their bytes, and moves bad files aside. A file can vanish at any
moment (another process moves or deletes it): reading it raises FileNotFoundError, and nothing
is left behind for it.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from digestd.atomic import write_atomic
from digestd.errors import DumpError
from digestd.ingest.formats import FORMATS, decode_dump, detect_format, parse_as
from digestd.ingest.papers import (
    ParsedDump,
    ParsedPaper,
    paper_identity,
    paper_uid,
    paper_url,
    title_key,
)

__all__ = [
    "FORMATS",
    "DumpFile",
    "ParsedDump",
    "ParsedPaper",
    "decode_dump",
    "detect_format",
    "dump_files",
    "move_into",
    "paper_identity",
    "paper_uid",
    "paper_url",
    "parse_as",
    "parse_dump_bytes",
    "quarantine_file",
    "read_dump_file",
    "settle_remaining",
    "title_key",
]

MAX_DUMP_BYTES = 64 * 1024 * 1024
# Names that announce a file still being written: "write to .name or name.part, then rename".
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", "~")


@dataclass(frozen=True)
class DumpFile:
    """A dump file read and parsed, with the SHA-256 of its bytes."""

    path: Path
    sha256: str
    parsed: ParsedDump


def parse_dump_bytes(data: bytes, *, reference: date, format: str | None = None) -> ParsedDump:
    """The papers in a dump's or response's bytes, in ``format`` (one of FORMATS) or, when
    None, the format detected from the content. DumpError if they cannot be read;
    SourceFailure when they are a service's error answer."""
    return parse_as(
        data, format=detect_format(data) if format is None else format, reference=reference
    )


def read_dump_file(path: Path, *, reference: date) -> DumpFile:
    """Read, hash and parse one dump file; DumpError says why it cannot be ingested, and
    FileNotFoundError that it is gone (nothing to quarantine)."""
    try:
        size = path.stat().st_size
        if size > MAX_DUMP_BYTES:
            raise DumpError(f"file is {size} bytes, over the {MAX_DUMP_BYTES} byte limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DumpError(f"cannot read: {exc.strerror}") from None
    return DumpFile(
        path, hashlib.sha256(data).hexdigest(), parse_dump_bytes(data, reference=reference)
    )


def dump_files(paths: list[Path]) -> list[Path]:
    """The dump files named by ``paths``: files as given, folders searched through their
    subfolders. Every file counts (one that is not a dump gets quarantined) except hidden ones,
    those in hidden folders, and in-progress ones."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not p.name.lower().endswith(IN_PROGRESS_SUFFIXES)
            )
        elif path.exists():
            found.append(path)
        else:
            raise DumpError(f"{path}: no such file or folder")
    return found


def settle_remaining(
    path: Path, *, settle_seconds: float, now: float | None = None
) -> float | None:
    """Seconds until ``path`` has not changed for ``settle_seconds`` (0 when it has: it can be
    taken); None when it is gone. The daemon and ``digestd ingest`` take inbox files by this one
    rule, so a file still being written (copied in, downloaded) is never taken half."""
    try:
        changed = path.stat().st_mtime
    except FileNotFoundError:
        return None
    at = time.time() if now is None else now
    return max(0.0, changed + settle_seconds - at)


NAME_MAX_CHARS = 120  # leaves room for ".reason", counters and temporary-file prefixes


def _free_name(folder: Path, name: str) -> Path:
    stem, suffix = Path(name).stem, Path(name).suffix[:16]
    stem = stem[: NAME_MAX_CHARS - len(suffix)]
    target = folder / f"{stem}{suffix}"
    counter = 1
    while target.exists() or target.with_name(target.name + ".reason").exists():
        target = folder / f"{stem}.{counter}{suffix}"
        counter += 1
    return target


def quarantine_file(path: Path, reason: str, *, folder: Path, keep_original: bool = False) -> Path:
    """Move ``path`` into ``folder`` (never overwriting; a long name is shortened) with a
    ``.reason`` file beside it; with ``keep_original`` copy it and leave the original alone.

    The reason is written once the file is there, so a file that vanished (FileNotFoundError)
    or could not be moved leaves no reason behind for nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, path.name)
    try:
        if keep_original:
            shutil.copy2(path, target)
        else:
            shutil.move(path, target)
    except BaseException:
        if keep_original or path.exists():
            target.unlink(missing_ok=True)  # half a copy (a full disk) is no quarantined file
        raise
    write_atomic(target.with_name(target.name + ".reason"), (reason.strip() + "\n").encode())
    return target


def move_into(path: Path, folder: Path) -> Path:
    """Move a processed dump into ``folder`` without overwriting an older file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, path.name)
    shutil.move(path, target)
    return target
