"""The errors digestd raises on purpose, each with a hint for the operator.

DigestError                 anything digestd reports as a one-line error
├── ConfigError             a config file, key or value is wrong
├── DumpError               a dump file cannot be parsed (it is quarantined)
│   └── SourceFailure       a service answered with its error feed or an unexpected shape
├── QueryError              a keyword query cannot be parsed (carries the position)
├── NotFoundError           a subscriber, topic or paper named on the command line does not exist
├── InputError              any other bad value given by the operator (address, timezone, hour)
├── StorageError            the database or a data folder cannot be read or written
└── BusyError               another digestd process holds a lock longer than digestd waits
"""

from __future__ import annotations


class DigestError(Exception):
    """An error with a message fit for one line of terminal output and an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(DigestError):
    """A config file, key or value is wrong."""


class DumpError(DigestError):
    """A dump file cannot be parsed."""


class SourceFailure(DumpError):
    """A service's response that carries no papers and is not an empty day: arXiv's error
    feed, a "Feed error for query" channel, JSON of an unexpected shape. Nothing is stored;
    the source counts as failed with this reason."""


class QueryError(DigestError):
    """A keyword query cannot be parsed; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, *, query: str, position: int) -> None:
        shown = query if len(query) <= 80 else query[:77] + "..."
        super().__init__(f"{message} at position {position + 1} of query {shown!r}")
        self.reason = message
        self.query = query
        self.position = position


class NotFoundError(DigestError):
    """A named subscriber, topic or paper does not exist."""


class InputError(DigestError):
    """A bad value given by the operator."""


class StorageError(DigestError):
    """The database or a data folder cannot be read or written: nothing was lost, the work
    waits until the operator fixes the cause (free space, permissions, the server)."""


class BusyError(DigestError):
    """Another digestd process holds a lock (the database's write lock) for
    longer than digestd waits; trying again later succeeds."""
