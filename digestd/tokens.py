"""Signed, purpose-scoped tokens for links in digests (unsubscribe, manage).

A token names a subscriber by id and by a digest of their address, so a link keeps working only
for the person it was made for: once that subscriber is removed and the id reused, old links
match nobody.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer


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


def unsubscribe_url(base_url: str, secret: str, subscriber_id: int, email: str) -> str:
    """The one-click unsubscribe link for a subscriber."""
    token = make_token(secret, "unsubscribe", subscriber_id, email)
    return f"{base_url.rstrip('/')}/unsubscribe/{token}"
