"""Signed, purpose-scoped tokens for links in digests (unsubscribe, manage), and the signed
VERP envelope addresses that bounces come back to.

A token names a subscriber by id and by a digest of their address, so a link keeps working only
for the person it was made for: once that subscriber is removed and the id reused, old links
match nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer

from digestd.errors import InputError

_VERP_TAG = re.compile(r"s(0|[1-9][0-9]{0,18})-([a-z2-7]{10})")


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"digestd.{purpose}")


def _address_digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def make_token(secret: str, purpose: str, subscriber_id: int, email: str) -> str:
    """A URL-safe token for one subscriber, valid only for ``purpose``."""
    return _serializer(secret, purpose).dumps([subscriber_id, _address_digest(email)])


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
    try:
        value = _serializer(secret, purpose).loads(token, max_age=max_age)
    except BadSignature:
        return None
    if not (isinstance(value, list) and len(value) == 2):
        return None
    subscriber_id, digest = value
    if not isinstance(subscriber_id, int) or isinstance(subscriber_id, bool):
        return None
    email = email_of(subscriber_id)
    return subscriber_id if email is not None and _address_digest(email) == digest else None


PURPOSES = ("confirm", "manage", "unsubscribe", "feed")


def link_url(base_url: str, secret: str, purpose: str, subscriber_id: int, email: str) -> str:
    """A subscriber's signed link for ``purpose``: /confirm/T, /manage/T, /unsubscribe/T or
    /feeds/me/T.atom under ``base_url``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    token = make_token(secret, purpose, subscriber_id, email)
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
