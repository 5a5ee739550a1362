"""What keeps the web pages safe: security headers on every response, the CSRF double-submit
cookie, the client address, and the per-client limit on sign-ups.

The CSRF defence is a random cookie (HttpOnly, SameSite=Strict) whose value every form repeats
in a hidden field; a POST whose field does not match its cookie is refused. There is no session
to tie the value to: a page on another site can neither read the cookie nor set it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

from itsdangerous import BadData
from sqlmodel import Session
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digestd.models import Subscriber
from digestd.tokens import read_claim

CSRF_COOKIE = "digestd_csrf"
_CSRF_VALUE = re.compile(r"[A-Za-z0-9_-]{32,64}")
# Our tokens are well under this; a longer one is not read at all.
_LONGEST_TOKEN = 400
_LARGEST_ID = 2**63 - 1  # SQLite's integer range

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    # Tokens are in the URLs of the pages: no other site may see them in a Referer.
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


_INLINE_STYLE = re.compile(rb"<style[^>]*>(.*?)</style>", re.S | re.I)


def policy_with_inline_styles(page: bytes) -> str:
    """The site's Content-Security-Policy, allowing also the exact ``<style>`` blocks of
    ``page`` (by their hashes): for the feeds index, a file written to be readable on its
    own, from disk or any web server, and so styled inline."""
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(block).digest()).decode()}'"
        for block in _INLINE_STYLE.findall(page)
    ]
    return CONTENT_SECURITY_POLICY.replace(
        "style-src 'self'", " ".join(["style-src 'self'", *hashes])
    )


class SecurityHeaders:
    """ASGI middleware that puts the security headers on every HTTP response (the site's
    Content-Security-Policy unless the response set a policy of its own)."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    # A response may bring its own policy (policy_with_inline_styles).
                    if name != "Content-Security-Policy" or name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_value(request: Request) -> tuple[str, bool]:
    """The CSRF value for the forms of this response, and whether it is new (then the
    response must set it as the cookie with ``set_csrf_cookie``)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if _CSRF_VALUE.fullmatch(current):
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: Response, value: str, *, secure: bool) -> None:
    """Set the CSRF cookie on ``response`` (Secure when the site is served over https)."""
    response.set_cookie(
        CSRF_COOKIE, value, path="/", httponly=True, samesite="strict", secure=secure
    )


def csrf_ok(request: Request, submitted: str) -> bool:
    """Whether a form's CSRF field matches the request's CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not _CSRF_VALUE.fullmatch(cookie):
        return False
    # compare_digest refuses non-ASCII text: compare bytes.
    return hmac.compare_digest(cookie.encode(), submitted.encode("utf-8", "replace"))


def client_address(request: Request, *, proxy_headers: bool) -> str:
    """Who sent the request, for rate limiting: the socket's peer, or with ``proxy_headers``
    the last X-Forwarded-For entry (the one our own proxy added; earlier ones are the client's
    word). An IPv6 client counts as its /64 network, which one host can fill with addresses."""
    address = request.client.host if request.client else ""
    if proxy_headers:
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            address = hops[-1]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100] or "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignUpRateLimit:
    """At most ``limit`` events per client within a sliding ``window``, by ``clock``.

    Kept in memory for the clients seen most recently (a restart forgets everything, which
    only ever lets a few more sign-ups through)."""

    def __init__(
        self,
        limit: int,
        *,
        clock: Callable[[], datetime],
        window: timedelta = timedelta(hours=1),
        clients_kept: int = 10_000,
    ) -> None:
        """A limiter allowing ``limit`` events per ``window``."""
        self.limit = limit
        self.window = window
        self._clock = clock
        self._clients_kept = clients_kept
        self._events: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> timedelta | None:
        """Record an event for ``client`` and return None if it is within the limit; else
        record nothing and return how long until the next event would be allowed."""
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(client, deque())
            self._events.move_to_end(client)
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return max(events[0] + self.window - now, timedelta(seconds=1))
            events.append(now)
            while len(self._events) > self._clients_kept:
                self._events.popitem(last=False)
            return None


def subscriber_by_token(
    session: Session, secret: str, purpose: str, token: str, *, max_age: int | None = None
) -> Subscriber | None:
    """The subscriber a link token names, if it was made for ``purpose``, is younger than
    ``max_age`` seconds and still belongs to them; None for any other token."""
    found = link_target(session, secret, purpose, token, max_age=max_age)
    return found[0] if found is not None else None


def link_target(
    session: Session, secret: str, purpose: str, token: str, *, max_age: int | None = None
) -> tuple[Subscriber, str | None] | None:
    """The subscriber a link token names and the reference it carries (None if it carries
    none), if it was made for ``purpose``, is younger than ``max_age`` seconds and still
    belongs to them; None for any other token."""
    if len(token) > _LONGEST_TOKEN:
        return None

    def email_of(subscriber_id: int) -> str | None:
        if not 0 < subscriber_id <= _LARGEST_ID:
            return None
        subscriber = session.get(Subscriber, subscriber_id)
        return subscriber.email if subscriber is not None else None

    try:
        claim = read_claim(secret, purpose, token, email_of=email_of, max_age=max_age)
    except (BadData, ValueError, UnicodeError):
        return None
    if claim is None:
        return None
    subscriber = session.get(Subscriber, claim.subscriber_id)
    return (subscriber, claim.reference) if subscriber is not None else None
