"""Signed, purpose-scoped tokens for links in digests (unsubscribe, manage), and the signed
VERP envelope addresses that bounces come back to.

A token names a subscriber by id and by a digest of their address, so a link keeps working only
for the person it was made for: once that subscriber is removed and the id reused, old links
match nobody. A token may also name one thing of theirs by a reference (a confirm link names
the sign-up request it confirms), so the link stops working once that thing is gone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from digestd.errors import InputError

_VERP_TAG = re.compile(r"s(0|[1-9][0-9]{0,18})-([a-z2-7]{10})")
_LONGEST_REFERENCE = 64


@dataclass(frozen=True)
class TokenClaim:
    """What a valid token names: a subscriber, and the reference it was made with (None for
    a token that names only the subscriber)."""

    subscriber_id: int
    reference: str | None = None


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"digestd.{purpose}")


def _address_digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def make_token(
    secret: str, purpose: str, subscriber_id: int, email: str, *, reference: str | None = None
) -> str:
    """A URL-safe token for one subscriber, valid only for ``purpose``; with ``reference``, it
    also names one thing of theirs (at most 64 characters)."""
    payload: list[int | str] = [subscriber_id, _address_digest(email)]
    if reference is not None:
        if not 0 < len(reference) <= _LONGEST_REFERENCE:
            raise ValueError(f"a token reference has 1 to {_LONGEST_REFERENCE} characters")
        payload.append(reference)
    return _serializer(secret, purpose).dumps(payload)


def read_claim(
    secret: str,
    purpose: str,
    token: str,
    *,
    email_of: Callable[[int], str | None],
    max_age: int | None = None,
) -> TokenClaim | None:
    """What a token made for ``purpose`` names, if it still belongs to the subscriber with that
    id (``email_of`` looks their address up); None if forged, foreign or expired."""
    try:
        value = _serializer(secret, purpose).loads(token, max_age=max_age)
    except BadSignature:
        return None
    if not (isinstance(value, list) and len(value) in (2, 3)):
        return None
    subscriber_id, digest, *rest = value
    if not isinstance(subscriber_id, int) or isinstance(subscriber_id, bool):
        return None
    reference = rest[0] if rest else None
    if reference is not None and not (
        isinstance(reference, str) and 0 < len(reference) <= _LONGEST_REFERENCE
    ):
        return None
    email = email_of(subscriber_id)
    if email is None or _address_digest(email) != digest:
        return None
    return TokenClaim(subscriber_id, reference)


def read_token(
    secret: str,
    purpose: str,
    token: str,
    *,
    email_of: Callable[[int], str | None],
    max_age: int | None = None,
) -> int | None:
    """The subscriber id in a token made for ``purpose`` if it still belongs to the subscriber
    with that id (``email_of`` looks their address up); None if forged, foreign or expired."""
    claim = read_claim(secret, purpose, token, email_of=email_of, max_age=max_age)
    return claim.subscriber_id if claim is not None else None


PURPOSES = ("confirm", "manage", "unsubscribe", "feed", "pause")


def link_url(
    base_url: str,
    secret: str,
    purpose: str,
    subscriber_id: int,
    email: str,
    *,
    reference: str | None = None,
) -> str:
    """A subscriber's signed link for ``purpose``: /confirm/T, /manage/T, /unsubscribe/T or
    /feeds/me/T.atom under ``base_url`` (naming ``reference`` too, if given)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    token = make_token(secret, purpose, subscriber_id, email, reference=reference)
    path = f"feeds/me/{token}.atom" if purpose == "feed" else f"{purpose}/{token}"
    return f"{base_url.rstrip('/')}/{path}"


def unsubscribe_url(base_url: str, secret: str, subscriber_id: int, email: str) -> str:
    """The one-click unsubscribe link for a subscriber."""
    return link_url(base_url, secret, "unsubscribe", subscriber_id, email)


def unsubscribe_mailto(address: str, secret: str, subscriber_id: int, email: str) -> str:
    """The mailto: unsubscribe link for a subscriber: a mail to ``address`` whose subject
    carries their unsubscribe token (read back by the bounce intake)."""
    token = make_token(secret, "unsubscribe", subscriber_id, email)
    return f"mailto:{address}?subject=unsubscribe%20{token}"


def _verp_signature(subscriber_id: int, secret: str) -> str:
    text = f"digestd.verp:{subscriber_id}".encode()
    digest = hmac.new(secret.encode(), text, hashlib.sha256).digest()
    # Lower-case base32 (a-z, 2-7): some MTAs fold the case of the local part.
    return base64.b32encode(digest).decode("ascii")[:10].lower()


def verp_address(bounce_address: str, subscriber_id: int, secret: str) -> str:
    """The envelope sender for one subscriber's mail: ``local+s<id>-<signature>@domain``.

    Raises InputError if ``bounce_address`` is not ``local@domain``.
    """
    local, at, domain = bounce_address.strip().rpartition("@")
    if not (local and at and domain):
        raise InputError(
            f"bounce address {bounce_address!r} is not local@domain",
            hint="check [delivery] bounce_address in config.toml",
        )
    if subscriber_id < 0:
        raise ValueError(f"subscriber id {subscriber_id} is negative")
    return f"{local}+s{subscriber_id}-{_verp_signature(subscriber_id, secret)}@{domain}"


def verp_subscriber(address: str, bounce_address: str, secret: str) -> int | None:
    """The subscriber id in a VERP address that ``verp_address`` made with this bounce address
    and secret; None for any other address or a forged one."""
    local, at, domain = bounce_address.strip().lower().rpartition("@")
    got_local, got_at, got_domain = address.strip().strip("<>").lower().rpartition("@")
    if not (local and at and domain and got_at) or got_domain != domain:
        return None
    if not got_local.startswith(local + "+"):
        return None
    match = _VERP_TAG.fullmatch(got_local[len(local) + 1 :])
    if match is None:
        return None
    subscriber_id = int(match.group(1))
    expected = _verp_signature(subscriber_id, secret)
    return subscriber_id if hmac.compare_digest(match.group(2), expected) else None
