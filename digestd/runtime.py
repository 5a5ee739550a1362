"""The state of one running digestd: settings, database, what is derived from them, caches.

The daemon, the web application and each CLI command make one :class:`Runtime` at start and
pass it down; a test makes its own. Nothing else keeps state between calls: the compiled
queries and the latest paper indexes (``match``), the encoded pieces messages share
(``encoded_pieces``), the recent papers the pages show (``recent_papers``), the link secret,
the sender identity and the DKIM signer (each derived from the settings once, then kept) all
live here, each bounded, and ``close`` drops the caches.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy.engine import Engine

from digestd.config import Settings
from digestd.deliver import FileSender, Sender, SmtpSender
from digestd.dkim_sign import DkimSigner, load_signer
from digestd.match import MatchCache
from digestd.message import EncodedPieces
from digestd.models import Paper

T = TypeVar("T")


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SenderIdentity:
    """Who the mail comes from, as the settings say once decoded: the From address and name
    (and its domain), the List-Id, the unsubscribe mailbox and the bounce address."""

    from_address: str
    from_name: str
    domain: str  # the From address's, for message ids
    list_id: str
    unsubscribe_mailto: str
    bounce_address: str


def sender_identity(settings: Settings) -> SenderIdentity:
    """The sender identity ``settings`` describe."""
    smtp, delivery = settings.smtp, settings.delivery
    return SenderIdentity(
        from_address=smtp.from_address,
        from_name=smtp.from_name,
        domain=smtp.from_address.rpartition("@")[2],
        list_id=settings.list_id,
        unsubscribe_mailto=delivery.unsubscribe_mailto or smtp.from_address,
        bounce_address=delivery.bounce_address,
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer ``[dkim]`` describes (None: no signing); ConfigError when broken."""
    return load_signer(
        selector=settings.dkim.selector,
        domain=settings.dkim.domain or settings.smtp.from_address.rpartition("@")[2],
        private_key_file=settings.dkim.private_key_file,
    )


def open_sender(settings: Settings) -> AbstractAsyncContextManager[Sender]:
    """The sender the config asks for: .eml files in the outbox, or SMTP."""
    if settings.delivery.backend == "smtp":
        smtp = settings.smtp
        return SmtpSender(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username or None,
            password=smtp.password or None,
            timeout=smtp.timeout,
            ca_file=smtp.ca_file or None,
            connections=smtp.connections,
            rate_per_second=settings.delivery.rate_per_second,
            helo_name=smtp.helo_name or None,
        )
    return FileSender(settings.folder("outbox"))


class LatestValue(Generic[T]):
    """One value and the version it was read at: read again only when the version moved."""

    def __init__(self) -> None:
        self._held: tuple[object, T] | None = None
        self._lock = threading.Lock()

    def get(self, version: object, load: Callable[[], T]) -> T:
        """The value held if it was read at ``version``, else ``load()`` (then held)."""
        with self._lock:
            held = self._held
        if held is not None and held[0] == version:
            return held[1]
        value = load()
        with self._lock:
            self._held = (version, value)
        return value

    def clear(self) -> None:
        """Forget the value."""
        with self._lock:
            self._held = None


class Runtime:
    """One running digestd: its settings, engine and clock, the values derived from the
    settings (each once), and its caches."""

    def __init__(
        self, settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.identity = sender_identity(settings)
        self.match = MatchCache()
        self.encoded_pieces = EncodedPieces()  # what messages share, encoded once
        # This process among all that share the database ("host:pid"): it holds the digests it
        # sends. Digests it still holds from an earlier run of its own are its to send again.
        self.node_id = f"{socket.gethostname()[:80]}:{os.getpid()}"
        # The papers of the last days the pages show, read again when papers changed
        # (web.recent); the web application's threads share it.
        self.recent_papers: LatestValue[list[Paper]] = LatestValue()
        # The pages run in a thread pool and match over the same index of the recent papers,
        # whose lazily built parts are not safe to build from two threads at once.
        self.page_matching = threading.Lock()
        self._lock = threading.Lock()
        self._link_secret: str | None = None
        self._signer: tuple[DkimSigner | None] | None = None  # a tuple once loaded

    @property
    def link_secret(self) -> str:
        """The secret for signed links: configured, or read from (made once in) the data dir;
        OSError when the key file cannot be made or read (asked again next time)."""
        with self._lock:
            if self._link_secret is None:
                self._link_secret = self.settings.link_secret()
            return self._link_secret

    def make_link_secret(self) -> None:
        """Make the link secret's key file now if it is to be made (``digestd init``)."""
        _ = self.link_secret

    @property
    def signer(self) -> DkimSigner | None:
        """The DKIM signer (None: no signing), loaded the first time it is asked for;
        ConfigError for a broken DKIM setup (tried again next time)."""
        with self._lock:
            if self._signer is None:
                self._signer = (dkim_signer(self.settings),)
            return self._signer[0]

    def open_sender(self) -> AbstractAsyncContextManager[Sender]:
        """A sender as the config asks for (see :func:`open_sender`)."""
        return open_sender(self.settings)

    def close(self) -> None:
        """Drop the caches (the runtime stays usable: they fill again)."""
        self.match.clear()
        self.encoded_pieces.clear()
        self.recent_papers.clear()
