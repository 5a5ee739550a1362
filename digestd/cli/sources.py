"""CLI commands for the configured sources: fetch (poll them once) and sources (how each fares)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from digestd import store
from digestd.cli.common import (
    EXIT_BAD_QUERY_OR_FILE,
    EXIT_WAITING,
    app,
    err,
    out,
    reading,
    ready_engine,
    settings,
    shown_with_verbose,
    stop_run,
    table,
)
from digestd.jobs.common import log
from digestd.jobs.fetch_job import run_fetch, selected_sources
from digestd.models import SourceState
from digestd.runtime import utc_now
from digestd.sources import host_gate


@app.command()
def fetch(
    names: Annotated[
        list[str] | None, typer.Argument(help="sources to poll (default: every [[sources]] entry)")
    ] = None,
) -> None:
    """Poll the configured sources once each; store what they return.

    Exits 3 when a source could not be fetched, 2 when what it returned was unreadable (kept
    in the quarantine folder)."""
    config = settings()
    selected_sources(config, names)  # an unknown name fails before anything is fetched
    if not config.sources:
        out.print("no sources configured (add [[sources]] entries to the config)")
        return
    engine = ready_engine(config)
    started: list[str] = []

    def progress(name: str, total: int) -> None:
        started.append(name)
        err.print(f"fetching {name} ({len(started)}/{total})")

    with shown_with_verbose(log.name):
        # Its turns at each host are shared, through the database, with a running daemon's.
        gate = host_gate(engine, config.fetching)
        report = run_fetch(config, engine, names, gate=gate, progress=progress)
    result = table("source", "status", "papers", "new", "detail")
    for o in report.sources:
        result.add_row(o.name, o.status, str(o.papers), str(o.new), o.detail)
    out.print(result)
    failed = report.failed
    out.print(
        f"{len(report.sources)} sources: {report.new} new papers, {len(failed)} failed"
        + (f" ({', '.join(o.name for o in failed)})" if failed else "")
    )
    if report.stopped:
        stop_run("fetch", report.stopped, left="the other sources were not polled")
    if any(o.status == "failed" for o in failed):
        raise typer.Exit(EXIT_WAITING)
    if failed:
        raise typer.Exit(EXIT_BAD_QUERY_OR_FILE)


@app.command()
def sources() -> None:
    """List the configured sources and how their last polls went."""
    config = settings()
    if not config.sources:
        out.print("no sources configured (add [[sources]] entries to the config)")
        return
    with reading(config) as session:
        states = store.source_states(session)
    now = utc_now()
    stale_after = timedelta(hours=config.fetching.stale_hours)
    result = table(
        "name",
        "url / path",
        "format",
        "every",
        "last success",
        "last attempt",
        "papers",
        "last error",
    )
    result.columns[0].no_wrap = True  # a name is never cut
    for spec in config.sources:
        state = states.get(spec.name) or SourceState(name=spec.name)  # never polled
        error = state.last_error
        if state.failing_since and now - store.aware(state.failing_since) > stale_after:
            error = f"STALE (failing since {_when(state.failing_since)}): {error}"
        result.add_row(
            spec.name,
            _shortened(spec.location),
            spec.format,
            f"{spec.interval_minutes:g} min",
            _when(state.last_success_at),
            _when(state.last_attempt_at),
            "" if state.last_paper_count is None else str(state.last_paper_count),
            error,
        )
    out.print(result)


def _when(at: datetime | None) -> str:
    return store.aware(at).strftime("%Y-%m-%d %H:%M UTC") if at else "never"


def _shortened(location: str, limit: int = 40) -> str:
    """A URL without its scheme (or a path), its middle elided past ``limit`` characters."""
    shown = location.split("://", 1)[-1]
    if len(shown) <= limit:
        return shown
    keep = (limit - 1) // 2
    return f"{shown[:keep]}…{shown[-keep:]}"
