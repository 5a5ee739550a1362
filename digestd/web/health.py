"""The health check, and reading the database the way the web application's own answers do:
refused at once (not recreated empty) when the SQLite file is gone.

/healthz answers 503 when the database cannot be read, or when a configured source has been
failing for longer than [fetching] stale_hours (an empty day is a success, and healthy)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.db import driver_line, read_scope
from digestd.errors import DigestError
from digestd.models import SourceState

log = logging.getLogger(__name__)

_REASON_LENGTH = 200
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "The database is unreachable, or a source has failed for too long"}
}


def check_database_file(engine: Engine) -> None:
    """Raise DigestError if the engine's SQLite file is gone: connecting would create an empty
    one in its place, and an open pool could even go on reading the unlinked one."""
    url = engine.url
    database = url.database or ""
    on_file = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if on_file and not url.query.get("uri") and not Path(database).is_file():
        raise DigestError("database file not found")


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A session for reading, refused with DigestError when the SQLite file is gone."""
    check_database_file(engine)
    with read_scope(engine) as session:
        yield session


def database_status(engine: Engine) -> tuple[datetime | None, datetime | None]:
    """The newest ingest and send times; raises (DigestError, or whatever the driver raises)
    when the database cannot be read."""
    check_database_file(engine)
    # A raw connection: no BEGIN IMMEDIATE, so a health check never waits on a writer's lock.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT (SELECT max(ingested_at) FROM dump), (SELECT max(sent_at) FROM delivery)"
        )
        last_ingest, last_send = cursor.fetchall()[0]
        cursor.close()
    finally:
        connection.close()
    return (
        store.aware(last_ingest) if last_ingest else None,
        store.aware(last_send) if last_send else None,
    )


def _iso(at: datetime | None) -> str | None:
    return store.aware(at).isoformat() if at else None


def source_health(
    specs: list[str], states: dict[str, SourceState], *, now: datetime, stale_hours: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each configured source's state as /healthz shows it, and the names of those failing
    for longer than ``stale_hours``."""
    shown: dict[str, dict[str, Any]] = {}
    stale: list[str] = []
    for name in specs:
        state = states.get(name) or SourceState(name=name)
        failing_since = store.aware(state.failing_since) if state.failing_since else None
        is_stale = failing_since is not None and now - failing_since > timedelta(hours=stale_hours)
        if is_stale:
            stale.append(name)
        shown[name] = {
            "last_success": _iso(state.last_success_at),
            "last_attempt": _iso(state.last_attempt_at),
            "last_paper_count": state.last_paper_count,
            "last_error": state.last_error[:_REASON_LENGTH],
            "failing_since": _iso(failing_since),
            "stale": is_stale,
        }
    return shown, stale


def health_router(
    engine: Engine,
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """The router serving /healthz; with ``settings``, it reports their [[sources]] too."""
    router = APIRouter(tags=["health"])
    names = [spec.name for spec in settings.sources] if settings else []
    stale_hours = settings.fetching.stale_hours if settings else 0.0

    @router.get(
        "/healthz",
        operation_id="healthz",
        responses=_HEALTH_RESPONSES,
        summary="Whether the database answers and the sources are fresh; the last ingest and "
        "send times",
    )
    def healthz() -> JSONResponse:
        """200 with the newest ingest and send times (and each source's state), or 503 naming
        why the database failed or which source has been failing too long."""
        headers = {"Cache-Control": "no-store"}
        try:
            last_ingest, last_send = database_status(engine)
            states: dict[str, SourceState] = {}
            if names:
                with reading(engine) as session:
                    states = store.source_states(session)
        # A raw connection raises the driver's own errors, whatever they are: any failure
        # to read is the answer this endpoint exists to give.
        except Exception as exc:
            reason = driver_line(exc)[:_REASON_LENGTH]
            log.error("health check: database unreachable: %s", reason)
            content: dict[str, Any] = {"status": "error", "database": reason}
            return JSONResponse(content, status_code=503, headers=headers)
        content = {
            "status": "ok",
            "database": "ok",
            "last_ingest": last_ingest.isoformat() if last_ingest else None,
            "last_send": last_send.isoformat() if last_send else None,
        }
        if not names:
            return JSONResponse(content, headers=headers)
        content["sources"], stale = source_health(
            names, states, now=clock(), stale_hours=stale_hours
        )
        if not stale:
            return JSONResponse(content, headers=headers)
        content["status"] = "error"
        content["stale_sources"] = stale
        content["problem"] = (
            f"source{'s' if len(stale) > 1 else ''} {', '.join(stale)} failing for over "
            f"{stale_hours:g} h ([fetching] stale_hours)"
        )
        log.error("health check: %s", content["problem"])
        return JSONResponse(content, status_code=503, headers=headers)

    return router
