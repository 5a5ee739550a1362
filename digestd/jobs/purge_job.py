"""The sign-up purge: web sign-ups whose confirmation link expired unconfirmed are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from digestd.config import Settings
from digestd.db import session_scope
from digestd.store import signup
from digestd.store.signup import PurgedSignUps


def run_purge(settings: Settings, engine: Engine, *, now: datetime | None = None) -> PurgedSignUps:
    """Delete the sign-up requests older than a confirmation link lives ([web] confirm_hours)
    and the subscribers who never confirmed one; returns what was deleted."""
    before = (now or datetime.now(UTC)) - timedelta(hours=settings.web.confirm_hours)
    with session_scope(engine) as session:
        return signup.purge_unconfirmed(session, before=before)
