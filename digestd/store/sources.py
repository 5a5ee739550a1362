"""Queries on the state of the configured sources: their validators and their health."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from digestd.models import SourceState


def source_states(session: Session) -> dict[str, SourceState]:
    """Every source's recorded state, by name (sources never polled have none)."""
    return {row.name: row for row in session.exec(select(SourceState)).all()}


def source_state(session: Session, name: str) -> SourceState | None:
    """The recorded state of source ``name``, if it was ever polled."""
    return session.get(SourceState, name)


def record_fetch_success(
    session: Session,
    name: str,
    *,
    url: str,
    now: datetime,
    papers: int,
    new: int,
    etag: str | None,
    last_modified: str | None,
) -> SourceState:
    """Record a successful poll of ``name`` at ``url`` (a 304 and an empty day count): its
    counts and, where not None, the validators to send next time."""
    state = _state_for(session, name, url)
    state.last_attempt_at = now
    state.last_success_at = now
    state.last_paper_count = papers
    state.last_new_count = new
    state.last_error = ""
    state.failing_since = None
    if etag is not None:
        state.etag = etag
    if last_modified is not None:
        state.last_modified = last_modified
    session.add(state)
    session.flush()
    return state


def record_fetch_failure(
    session: Session, name: str, *, url: str, now: datetime, reason: str
) -> SourceState:
    """Record a failed poll of ``name`` at ``url``: why, and since when it fails."""
    state = _state_for(session, name, url)
    state.last_attempt_at = now
    state.last_error = reason
    if state.failing_since is None:
        state.failing_since = now
    session.add(state)
    session.flush()
    return state


def _state_for(session: Session, name: str, url: str) -> SourceState:
    """The state row of ``name``, made if missing; validators of another URL are forgotten."""
    state = session.get(SourceState, name)
    if state is None:
        try:
            with session.begin_nested():
                state = SourceState(name=name, url=url)
                session.add(state)
        except IntegrityError:  # another process polled it first
            state = session.get(SourceState, name)
            assert state is not None
    if state.url != url:
        state.url, state.etag, state.last_modified = url, "", ""
    return state
