"""The disks under the data folders: free space, and what a failed read or write means for the
operator (one line with a hint, as a StorageError)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from digestd.errors import StorageError

# errno -> what the operator can do about it
_HINTS = {
    errno.ENOSPC: "free space there",
    errno.EDQUOT: "free space there or raise this user's disk quota",
    errno.EROFS: "the file system is mounted read-only: mount it read-write",
    errno.EIO: "check the disk (the system log says more)",
    errno.EACCES: "let this user write there",
    errno.EPERM: "let this user write there",
}
_WRITING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def os_reason(exc: OSError) -> str:
    """An OS error as ``[Errno 28] No space left on device``, without the file name."""
    if exc.errno is None:
        return str(exc) or type(exc).__name__
    return f"[Errno {exc.errno}] {exc.strerror or os.strerror(exc.errno)}"


def disk_refuses_writes(exc: OSError) -> bool:
    """Whether ``exc`` says the disk takes no writes at all (full, over quota, read-only), so
    every other write there would fail the same way."""
    return exc.errno in _WRITING_ERRNOS


def storage_hint(error_number: int | None) -> str:
    """What the operator can do about an OS error number that means a disk problem ("" when it
    is not one)."""
    return _HINTS.get(error_number or 0, "")


def storage_error(exc: OSError, path: Path | str | None = None) -> StorageError | None:
    """``exc``, raised reading or writing ``path`` (default: the error's own file name), as a
    StorageError when it means the disk cannot be used (full, read-only, failing, forbidden);
    None for any other OS error."""
    hint = storage_hint(exc.errno)
    if not hint:
        return None
    where = path if path is not None else exc.filename
    verb = "cannot write" if exc.errno in _WRITING_ERRNOS else "cannot read or write"
    subject = f"{verb} {where}" if where else f"{verb} the disk"
    return StorageError(f"{subject}: {os_reason(exc)}", hint=f"{hint}; nothing stored is lost")


def free_bytes(path: Path) -> int | None:
    """Bytes free for this user on the file system that holds ``path`` (or its nearest existing
    folder); None when none can be looked at."""
    for folder in (path, *path.parents):
        try:
            stats = os.statvfs(folder)
        except OSError:
            continue
        return stats.f_bavail * stats.f_frsize
    return None


@dataclass(frozen=True)
class SpaceShortage:
    """A folder whose disk has less free space than the reserve."""

    path: Path
    free: int
    reserve: int

    def __str__(self) -> str:
        return (
            f"only {self.free / 1e6:.1f} MB free on the disk that holds {self.path} "
            f"(the reserve is {self.reserve / 1e6:g} MB)"
        )


def space_shortage(paths: Iterable[Path], *, reserve: int) -> SpaceShortage | None:
    """The first of ``paths`` whose disk has less than ``reserve`` bytes free, if any."""
    if reserve <= 0:
        return None
    for path in paths:
        free = free_bytes(path)
        if free is not None and free < reserve:
            return SpaceShortage(path, free, reserve)
    return None
