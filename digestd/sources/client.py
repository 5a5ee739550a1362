"""Fetching one source's bytes: a GET with the source's validators (ETag, Last-Modified),
timeouts, a size limit and retries, through the host gate; or a local file read.

What comes back is bytes for ingest/ to parse, never papers: this module does not parse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from digestd import __version__
from digestd.errors import DigestError
from digestd.sources.gate import HostBusy, HostGate
from digestd.sources.spec import SourceSpec

if TYPE_CHECKING:  # digestd.config imports digestd.sources.spec: no import at run time
    from digestd.config import FetchingSettings

log = logging.getLogger("digestd.sources")


class FetchError(DigestError):
    """A source could not be fetched (HTTP error, timeout, oversized response, unreadable file):
    nothing is stored and the source counts as failed with this reason."""


@dataclass(frozen=True)
class Validators:
    """What a server said identifies the version it sent: sent back to ask "only if changed"."""

    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class Fetched:
    """A source's bytes (a response body, or a local file's content)."""

    body: bytes
    validators: Validators
    content_type: str = ""
    tries: int = 1


@dataclass(frozen=True)
class NotModified:
    """A 304: the source has not changed since the validators sent."""

    validators: Validators
    tries: int = 1


class _TryAgain(Exception):
    """A failure a later try may not meet (a timeout, a 429 or 5xx answer)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def user_agent(contact: str) -> str:
    """The User-Agent of every request: who asks, and whom to write to about it."""
    return f"digestd/{__version__} (+mailto:{contact})"


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """The wait a Retry-After header asks for (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class SourceClient:
    """Fetches sources politely: one HTTP client (the User-Agent naming ``contact``), the
    [fetching] limits, and the runtime's host gate. Use as a context manager, or close()."""

    def __init__(
        self,
        policy: FetchingSettings,
        *,
        contact: str,
        gate: HostGate,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.gate = gate
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._http = httpx.Client(
            headers={"User-Agent": user_agent(contact)},
            timeout=httpx.Timeout(policy.timeout_seconds),
            follow_redirects=True,
        )

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections kept open."""
        self._http.close()

    def fetch(self, spec: SourceSpec, known: Validators | None = None) -> Fetched | NotModified:
        """The source's bytes, or NotModified when ``known`` still describes them; FetchError
        says why there are none."""
        if spec.path:
            return self._read_file(Path(spec.location))
        return self._fetch_url(spec.url, known or Validators())

    def _read_file(self, path: Path) -> Fetched:
        limit = self.policy.max_bytes
        try:
            if path.stat().st_size > limit:
                raise FetchError(f"{path} is over {limit} bytes")
            return Fetched(path.read_bytes(), Validators())
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _fetch_url(self, url: str, known: Validators) -> Fetched | NotModified:
        headers = {}
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        host = urlsplit(url).hostname or url
        tries = self.policy.retries + 1
        for attempt in range(1, tries + 1):
            try:
                with self.gate.turn(host):
                    return self._get(url, headers, attempt)
            except HostBusy as busy:
                raise FetchError(busy.message, hint=busy.hint) from None
            except _TryAgain as again:
                failed = again.reason + (f" after {attempt} tries" if attempt > 1 else "")
                if attempt == tries:
                    raise FetchError(failed) from None
                cap = self.policy.max_retry_after_seconds
                if again.retry_after is not None and again.retry_after > cap:
                    # Asking sooner than the server wants is impolite: the next poll asks again.
                    raise FetchError(
                        f"{again.reason}, asked to wait {again.retry_after:g} s (over [fetching] "
                        f"max_retry_after_seconds = {cap:g})"
                    ) from None
                wait = min(self.policy.retry_seconds * 2 ** (attempt - 1), cap)
                wait = max(wait, again.retry_after or 0.0)
                log.info("%s: %s; trying again in %g s", url, again.reason, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")  # the last try returned or raised

    def _get(self, url: str, headers: dict[str, str], attempt: int) -> Fetched | NotModified:
        policy = self.policy
        started = self._clock()
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                status = response.status_code
                validators = Validators(
                    response.headers.get("etag", ""), response.headers.get("last-modified", "")
                )
                if status == 304:
                    return NotModified(validators, attempt)
                if status == 429 or 500 <= status <= 599:
                    wait = retry_after_seconds(
                        response.headers.get("retry-after"), now=self._wall_clock()
                    )
                    raise _TryAgain(_status_line(response), retry_after=wait)
                if not 200 <= status <= 299:
                    raise FetchError(_status_line(response))
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > policy.max_bytes:
                    raise FetchError(f"response over {policy.max_bytes} bytes")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > policy.max_bytes:
                        raise FetchError(f"response over {policy.max_bytes} bytes")
                    if self._clock() - started > policy.deadline_seconds:
                        # A server this slow will not be faster a few seconds later.
                        raise FetchError(
                            f"timed out: the response took over {policy.deadline_seconds:g} s"
                        )
                content_type = response.headers.get("content-type", "")
                return Fetched(bytes(body), validators, content_type, attempt)
        except httpx.ConnectTimeout:
            raise _TryAgain(f"timed out after {policy.timeout_seconds:g} s connecting") from None
        except httpx.TimeoutException:
            raise _TryAgain(f"timed out after {policy.timeout_seconds:g} s") from None
        except httpx.TransportError as exc:
            raise _TryAgain(f"connection failed: {exc or type(exc).__name__}") from None
        except httpx.HTTPError as exc:  # a bad encoding, too many redirects: no retry helps
            raise FetchError(f"{type(exc).__name__}: {exc}") from None


def _status_line(response: httpx.Response) -> str:
    phrase = response.reason_phrase
    return f"HTTP {response.status_code}" + (f" {phrase}" if phrase else "")
