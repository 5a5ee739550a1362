"""Bounce mailboxes: the messages in a message file, an mbox, a maildir or a folder of files.

``read_mailbox`` reads them; ``mark_read`` flags a maildir message as seen, so that the next
pass skips it. What a message reports is digestd.bounces' business.
"""

from __future__ import annotations

import contextlib
import mailbox
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from digestd.errors import InputError


@dataclass(frozen=True)
class MailboxItem:
    """One message read from a mailbox, with where it came from."""

    name: str
    data: bytes


def read_mailbox(path: Path) -> Iterator[MailboxItem]:
    """The messages at ``path``: a message file, an mbox file, a maildir or a folder of files.

    A maildir gives the messages in new/ and those in cur/ not flagged seen; a folder gives
    every regular file, sorted by name. Raises InputError if ``path`` is missing or unreadable.
    """
    try:
        if stat.S_ISDIR(path.stat().st_mode):
            if _is_maildir(path):
                return _read_files(_maildir_unseen(path))
            return _read_files(sorted(entry for entry in path.iterdir() if entry.is_file()))
        with path.open("rb") as file:
            head = file.read(5)
    except OSError as error:
        raise _unreadable(path, error) from None
    if head == b"From ":
        return _read_mbox(path)
    # An empty file is an mbox with no messages (a spool file after its messages were taken).
    return _read_files([path]) if head else iter(())


def _unreadable(path: Path, error: OSError) -> InputError:
    problem = "no such file or folder" if isinstance(error, FileNotFoundError) else error.strerror
    return InputError(f"cannot read bounce mailbox {path}: {problem or error}")


def _is_maildir(path: Path) -> bool:
    return (path / "new").is_dir() and (path / "cur").is_dir()


# A maildir name starts with the delivery time: seconds, then (Python, Dovecot) M<microseconds>,
# not zero-padded, so names sort by arrival only when read as numbers.
_ARRIVAL = re.compile(r"(\d+)\.(?:M(\d+))?")


def _arrival(path: Path) -> tuple[int, int, str]:
    found = _ARRIVAL.match(path.name)
    if found is None:
        return (0, 0, path.name)
    return (int(found[1]), int(found[2] or 0), path.name)


def _maildir_unseen(path: Path) -> list[Path]:
    def messages(folder: Path) -> list[Path]:
        # Maildir readers skip names starting with a dot (RFC-less but universal convention).
        found = (p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
        return sorted(found, key=_arrival)

    cur = [p for p in messages(path / "cur") if "S" not in _maildir_flags(p.name)]
    return messages(path / "new") + cur


def _maildir_flags(name: str) -> str:
    _, _, info = name.partition(":")
    return info[2:] if info.startswith("2,") else ""


def _read_files(files: list[Path]) -> Iterator[MailboxItem]:
    for file in files:
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            continue  # taken by another reader (a mail client on the same maildir) meanwhile
        except OSError as error:
            raise _unreadable(file, error) from None
        yield MailboxItem(name=str(file), data=data)


def _read_mbox(path: Path) -> Iterator[MailboxItem]:
    # Read without locking: an MTA appending meanwhile can leave the last message cut short
    # (a maildir has no such window).
    try:
        with contextlib.closing(mailbox.mbox(path, create=False)) as box:
            for number, key in enumerate(box.keys(), start=1):
                yield MailboxItem(name=f"{path}#{number}", data=box.get_bytes(key))
    except OSError as error:
        raise _unreadable(path, error) from None


def mark_read(path: Path, item: MailboxItem) -> None:
    """Flag a maildir message seen, moving it to cur/, so that ``read_mailbox`` skips it;
    nothing for other kinds of mailbox, where the caller dedups by report key."""
    if not _is_maildir(path):
        return
    source = Path(item.name)
    folder = source.parent.resolve()
    if folder not in ((path / "new").resolve(), (path / "cur").resolve()):
        raise ValueError(f"{item.name} is not a message of the maildir {path}")
    flags = _maildir_flags(source.name)
    if folder == (path / "cur").resolve() and "S" in flags:
        return
    unique = source.name.partition(":")[0]
    target = path / "cur" / f"{unique}:2,{''.join(sorted(set(flags) | {'S'}))}"
    try:
        os.rename(source, target)
    except FileNotFoundError:
        pass  # moved or deleted by another reader; it will not be read from here again
    except OSError as error:
        raise InputError(f"cannot mark {source} as read: {error.strerror or error}") from None
