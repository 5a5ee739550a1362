"""Signed, purpose-scoped tokens for links in digests (unsubscribe, manage)."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"digestd.{purpose}")


def make_token(secret: str, purpose: str, subscriber_id: int) -> str:
    """A URL-safe token naming the subscriber, valid only for ``purpose``."""
    return _serializer(secret, purpose).dumps(subscriber_id)


def read_token(secret: str, purpose: str, token: str, *, max_age: int | None = None) -> int | None:
    """The subscriber id in a token made for ``purpose``, or None if forged, foreign or expired."""
    try:
        value = _serializer(secret, purpose).loads(token, max_age=max_age)
    except BadSignature:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def unsubscribe_url(base_url: str, secret: str, subscriber_id: int) -> str:
    """The one-click unsubscribe link for a subscriber."""
    return f"{base_url.rstrip('/')}/unsubscribe/{make_token(secret, 'unsubscribe', subscriber_id)}"
