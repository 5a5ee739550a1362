"""The daemon: an APScheduler scheduler running the ingest, fetch, send and feeds jobs, stopped
cleanly by SIGTERM or Ctrl-C after the jobs in flight.

Two executors of one worker each: "default" runs ingest, send, bounces, the sign-up purge and
every feeds rebuild one at a time; "fetch" polls the sources, so a slow source never delays
the others' jobs. A fetch that stores papers asks for a feeds rebuild on "default"."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digestd.config import Settings
from digestd.db import database_error
from digestd.errors import DigestError, StorageError
from digestd.jobs import feeds_out_of_date, run_feeds, run_ingest, run_send, start_warnings
from digestd.jobs.bounce_job import run_bounces
from digestd.jobs.fetch_job import run_fetch
from digestd.jobs.purge_job import run_purge
from digestd.jobs.send_record import pause_message
from digestd.runtime import Runtime
from digestd.sources import HostGate, host_gate
from digestd.storage import storage_error

log = logging.getLogger("digestd.daemon")
# What the scheduler calls: (settings, engine, the daemon's runtime).
ScheduledJob = Callable[[Settings, Engine, "Runtime | None"], None]
# APScheduler logs every job start and end at INFO: noise every few minutes in an idle daemon.
logging.getLogger("apscheduler").setLevel(logging.WARNING)
# The sources are first polled this long after the start (the inbox is looked into at once).
FIRST_FETCH_SECONDS = 5.0


def _log_failure(job: str, exc: Exception, engine: Engine) -> None:
    """Log why ``job`` failed: one line for what digestd foresees (its own errors, the database's,
    a full or read-only disk), a traceback for anything else."""
    known: DigestError | None = exc if isinstance(exc, DigestError) else None
    if isinstance(exc, SQLAlchemyError):
        known = database_error(exc, url=engine.url)
    elif isinstance(exc, OSError):
        known = storage_error(exc)
    if known is None:
        log.exception("%s failed; the daemon goes on", job)
    elif isinstance(known, StorageError):
        log.error("%s: %s; the daemon goes on", job, known)
    else:  # a bad item, or another process holding a lock: the next run gets through
        log.warning("%s: %s; the daemon goes on", job, known)


def ingest_and_publish(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
    """Ingest the inbox; rebuild the feeds if papers arrived or topics changed. Failures are
    logged, not raised."""
    try:
        report = run_ingest(settings, engine, settle_seconds=settings.schedule.inbox_settle_seconds)
        if report.stopped:
            log.error("ingest stopped: %s; the daemon goes on", report.stopped)
        if report.files:
            log.info(
                "ingest: %d files, %d new papers, %d already known, %d quarantined",
                len(report.files),
                report.new,
                report.known,
                report.quarantined,
            )
        if report.new or feeds_out_of_date(settings, engine):
            written = run_feeds(settings, engine, runtime=runtime)
            log.info("feeds: %d files written", len(written))
    except Exception as exc:
        _log_failure("ingest job", exc, engine)


def publish_feeds(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
    """Rebuild the feeds (papers were fetched). Failures are logged, not raised."""
    try:
        written = run_feeds(settings, engine, runtime=runtime)
        log.info("feeds: %d files written", len(written))
    except Exception as exc:
        _log_failure("feeds job", exc, engine)


def fetch_and_publish(
    settings: Settings,
    engine: Engine,
    name: str,
    *,
    gate: HostGate,
    publish: Callable[[], None],
) -> None:
    """Poll source ``name`` through the daemon's host gate; call ``publish`` (which asks for the
    feeds to be rebuilt) if papers arrived. Failures are logged (and recorded in the source's
    state), not raised."""
    try:
        report = run_fetch(settings, engine, [name], gate=gate)
        if report.stopped:
            log.error("fetch %s stopped: %s; the daemon goes on", name, report.stopped)
        if report.new:
            publish()
    except Exception as exc:
        _log_failure(f"fetch job {name}", exc, engine)


def _fetcher(name: str, gate: HostGate, publish: Callable[[], None]) -> ScheduledJob:
    """The scheduled call that polls source ``name``."""

    def fetch(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
        fetch_and_publish(settings, engine, name, gate=gate, publish=publish)

    fetch.__name__ = f"fetch_{name}"
    return fetch


def send_due(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
    """Send the digests that are due now. Failures are logged, not raised."""
    try:
        report = asyncio.run(run_send(settings, engine, runtime=runtime))
        if report.outcomes:
            log.info(
                "send: %d sent, %d to retry, %d failed, %d sent again after an interrupted run",
                report.count("sent"),
                report.count("retry"),
                report.count("failed"),
                report.resent,
            )
        if report.paused:
            # The line `digestd send` writes on stderr: why, what to do, what waits.
            log.warning("%s; the daemon goes on", pause_message(report))
    except Exception as exc:
        _log_failure("send job", exc, engine)


def read_bounces(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
    """Record the bounces and complaints waiting in the configured mailbox. Failures are
    logged, not raised."""
    try:
        path = Path(settings.bounces.path).expanduser()
        report = run_bounces(settings, engine, path, runtime=runtime)
        if report.stopped:
            log.error("bounce job stopped: %s; the daemon goes on", report.stopped)
        if report.outcomes:
            log.info(
                "bounces: %d messages read, %d subscribers suppressed",
                len(report.outcomes),
                len(report.suppressed),
            )
    except Exception as exc:
        _log_failure("bounce job", exc, engine)


def purge_sign_ups(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
    """Delete web sign-ups whose confirmation link expired unconfirmed. Failures are logged,
    not raised."""
    try:
        purged = run_purge(settings, engine)
        if purged.subscribers:
            log.info("removed %d sign-ups never confirmed", len(purged.subscribers))
    except Exception as exc:
        _log_failure("sign-up purge", exc, engine)


def _unless_stopping(job: ScheduledJob, stop: threading.Event) -> ScheduledJob:
    """``job`` as a scheduled call that does nothing once a stop was requested, so a run that
    was queued behind the job in flight does not start during shutdown."""

    def run(settings: Settings, engine: Engine, runtime: Runtime | None = None) -> None:
        if not stop.is_set():
            job(settings, engine, runtime)

    run.__name__ = job.__name__
    return run


def _add_fetch_jobs(
    scheduler: BackgroundScheduler,
    settings: Settings,
    engine: Engine,
    *,
    stop: threading.Event,
    runtime: Runtime,
) -> None:
    """One fetch job per source on the "fetch" executor, sharing one host gate; a fetch that
    stored papers has the feeds rebuilt on "default"."""
    gate = host_gate(engine, settings.fetching, stop=stop)

    def publish() -> None:
        # On "default", after the job in flight there: feeds are written by one thread at a
        # time, and the fetch goes on meanwhile.
        scheduler.add_job(
            _unless_stopping(publish_feeds, stop),
            args=(settings, engine, runtime),
            name="rebuild feeds after a fetch",
            executor="default",
        )

    for spec in settings.sources:
        scheduler.add_job(
            _unless_stopping(_fetcher(spec.name, gate, publish), stop),
            "interval",
            minutes=spec.interval_minutes,
            args=(settings, engine, runtime),
            id=f"fetch-{spec.name}",
            name=f"fetch source {spec.name}",
            executor="fetch",
            next_run_time=datetime.now(UTC) + timedelta(seconds=FIRST_FETCH_SECONDS),
        )


def build_scheduler(
    settings: Settings,
    engine: Engine,
    *,
    stop: threading.Event,
    runtime: Runtime | None = None,
) -> BackgroundScheduler:
    """A scheduler with the ingest, send and (one per source) fetch jobs. The fetch jobs run on
    the "fetch" executor, the others on "default", each one job at a time; a fetch never
    delays ingest or send. The fetch jobs share one host gate (the database's leases):
    requests to a host stay one at a time and spaced, whichever process sends them. The jobs
    share ``runtime`` (the daemon's; else one made here)."""
    runtime = runtime if runtime is not None else Runtime(settings, engine)
    scheduler = BackgroundScheduler(
        executors={
            "default": ThreadPoolExecutor(max_workers=1),
            "fetch": ThreadPoolExecutor(max_workers=1),
        },
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )
    schedule = settings.schedule
    scheduler.add_job(
        _unless_stopping(ingest_and_publish, stop),
        "interval",
        minutes=schedule.ingest_interval_minutes,
        args=(settings, engine, runtime),
        id="ingest",
        name="ingest inbox",
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(
        _unless_stopping(send_due, stop),
        "interval",
        minutes=schedule.send_check_minutes,
        args=(settings, engine, runtime),
        id="send",
        name="send due digests",
    )
    _add_fetch_jobs(scheduler, settings, engine, stop=stop, runtime=runtime)
    if settings.web.enabled:
        scheduler.add_job(
            _unless_stopping(purge_sign_ups, stop),
            "interval",
            hours=1,
            args=(settings, engine, runtime),
            id="purge-sign-ups",
            name="remove expired sign-ups",
        )
    if settings.bounces.path:
        scheduler.add_job(
            _unless_stopping(read_bounces, stop),
            "interval",
            minutes=settings.bounces.check_minutes,
            args=(settings, engine, runtime),
            id="bounces",
            name="read bounces",
        )
    return scheduler


def _start_web(settings: Settings, engine: Engine, runtime: Runtime) -> Callable[[], None]:
    """Serve the web application in a thread; returns what stops it (requests in flight are
    answered first)."""
    from digestd.web import web_server

    server = web_server(settings, engine, clock=runtime.clock, runtime=runtime)
    thread = threading.Thread(target=server.run, name="digestd-web", daemon=True)
    thread.start()
    log.info("web application on http://%s:%d", settings.web.host, settings.web.port)

    def stop_web() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return stop_web


def run_daemon(settings: Settings, engine: Engine, *, stop: threading.Event | None = None) -> None:
    """Run the scheduler until SIGTERM, SIGINT or ``stop`` is set, then drain the jobs in flight
    (a fetch waiting for a host's turn gives up at once)."""
    stop = stop or threading.Event()
    for warning in start_warnings(settings):
        log.warning(warning)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping after the jobs in flight", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    runtime = Runtime(settings, engine)
    scheduler = build_scheduler(settings, engine, stop=stop, runtime=runtime)
    scheduler.start()
    stop_web = _start_web(settings, engine, runtime) if settings.web.enabled else None
    log.info(
        "digestd running: inbox %s every %g min, due digests every %g min, %d sources",
        settings.folder("inbox"),
        settings.schedule.ingest_interval_minutes,
        settings.schedule.send_check_minutes,
        len(settings.sources),
    )
    stop.wait()
    if stop_web is not None:
        stop_web()
    scheduler.shutdown(wait=True)
    runtime.close()
    log.info("digestd stopped")
