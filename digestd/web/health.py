"""The health check, and reading the database the way the web application's own answers do:
refused at once (not recreated empty) when the SQLite file is gone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd import store
from digestd.db import driver_line, read_scope
from digestd.errors import DigestError

log = logging.getLogger(__name__)

_REASON_LENGTH = 200
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "The database is unreachable"}
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


def health_router(engine: Engine) -> APIRouter:
    """The router serving /healthz."""
    router = APIRouter(tags=["health"])

    @router.get(
        "/healthz",
        operation_id="healthz",
        responses=_HEALTH_RESPONSES,
        summary="Whether the database answers, and the last ingest and send times",
    )
    def healthz() -> JSONResponse:
        """200 with the newest ingest and send times, or 503 naming why the database failed."""
        headers = {"Cache-Control": "no-store"}
        try:
            last_ingest, last_send = database_status(engine)
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
        return JSONResponse(content, headers=headers)

    return router
