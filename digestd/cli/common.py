"""What every CLI command shares: the Typer apps, global options, settings, tables, progress."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd.config import Settings, load_settings
from digestd.db import check_schema, make_engine, read_scope, session_scope
from digestd.errors import BusyError, DigestError, QueryError, StorageError
from digestd.runtime import Runtime

app = typer.Typer(
    help="digestd: paper dumps in, personalized email digests and topic Atom feeds out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
topic_app = typer.Typer(
    help="Manage topics (admin-defined named queries with a feed).", no_args_is_help=True
)
subscriber_app = typer.Typer(
    help="Manage subscribers and their keyword queries.", no_args_is_help=True
)
app.add_typer(topic_app, name="topic")
app.add_typer(subscriber_app, name="subscriber")

# Text from dumps and subscribers reaches the terminal: no markup, no emoji codes, no highlighting.
out = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` without control characters, escape sequences' ESC and bidi overrides."""
    return _TERMINAL_UNSAFE.sub("", text)


class SafeTable(Table):
    """A rich table whose string cells are shown literally, stripped of terminal controls."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        """Add a row; strings become plain Text."""
        cells = [Text(terminal_safe(c)) if isinstance(c, str) else c for c in renderables]
        super().add_row(*cells, **kwargs)


class State:
    """What the global options set up for the commands."""

    config_path: Path | None = None
    debug: bool = False
    verbose: bool = False
    database_url: str | None = None  # the database this invocation works on, once it is known


@app.callback()
def global_options(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="config file (default: $DIGESTD_CONFIG)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks of unexpected errors")
    ] = False,
) -> None:
    """Options that apply to every command."""
    State.config_path = config
    State.debug = debug
    State.verbose = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def settings() -> Settings:
    """The settings for this invocation."""
    config = load_settings(State.config_path)
    State.database_url = config.database_url
    return config


def ready_engine(config: Settings) -> Engine:
    """An engine on a database whose schema is current (checked without a write lock)."""
    engine = make_engine(config.database_url)
    check_schema(engine)
    return engine


def command_runtime(config: Settings) -> Runtime:
    """The runtime of this command: ``config`` on a database whose schema is current."""
    return Runtime(config, ready_engine(config))


@contextmanager
def database(config: Settings | None = None) -> Iterator[Session]:
    """A session on this invocation's database (``config``, else the settings loaded now),
    committed when the command succeeds."""
    with session_scope(ready_engine(config or settings())) as session:
        yield session


@contextmanager
def reading(config: Settings | None = None) -> Iterator[Session]:
    """A session that only reads this invocation's database: it takes no write lock, so the
    command answers while another process writes."""
    with read_scope(ready_engine(config or settings())) as session:
        yield session


# The exit codes README lists under "Exit codes".
EXIT_OK = 0
EXIT_BAD_VALUE = 1  # a bad value or state (DigestError and most of its subclasses)
EXIT_BAD_QUERY_OR_FILE = 2  # a query that does not parse, a quarantined file
EXIT_WAITING = 3  # a digest failed or waits for a retry, or the send run paused
EXIT_STORAGE = 4  # the database or a data folder cannot be read or written
EXIT_BUSY = 5  # another digestd process held a lock too long
EXIT_UNEXPECTED = 70
EXIT_INTERRUPTED = 130


def exit_code(error: DigestError) -> int:
    """The exit code that reports ``error``."""
    if isinstance(error, QueryError):
        return EXIT_BAD_QUERY_OR_FILE
    if isinstance(error, StorageError):
        return EXIT_STORAGE
    if isinstance(error, BusyError):
        return EXIT_BUSY
    return EXIT_BAD_VALUE


def error_line(message: str) -> None:
    """Write ``error: message`` as one unwrapped line on stderr."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")


def stop_run(what: str, stopped: DigestError, *, left: str) -> NoReturn:
    """End a command whose run ``stopped`` (the database or a disk refused it): one line saying
    why, what was ``left`` for the next run, and the exit code of the cause."""
    hint = "; ".join(filter(None, (stopped.hint, left)))
    error_line(f"{what} stopped: {stopped.message} ({hint})")
    raise typer.Exit(exit_code(stopped))


class ProgressBar:
    """What a command tells its progress bar: ``bar(item, total)`` once per item as it starts,
    ``bar.show(text)`` for what it waits for meanwhile."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task = bar.add_task("", total=None)

    def __call__(self, name: str, total: int) -> None:
        """Count item ``name``, one of ``total``, as started."""
        self._bar.update(self._task, total=total, description=name)
        self._bar.advance(self._task)

    def show(self, text: str) -> None:
        """Show ``text`` beside the bar without counting an item."""
        self._bar.update(self._task, description=text)


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressBar]:
    """A rich progress bar on stderr (hidden when not a terminal); yields a ``ProgressBar``
    (``bar(item, total)`` once per item as it starts)."""
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # not even an empty line where stderr is a file or a pipe
    ) as bar:
        yield ProgressBar(bar)


@contextmanager
def shown_with_verbose(logger_name: str) -> Iterator[None]:
    """For the block, the log lines of ``logger_name`` reach stderr only with --verbose: the
    command prints what they say itself (as a table)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    if not State.verbose:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def table(*columns: str, title: str | None = None) -> Table:
    """A table with the house style whose cells are shown literally."""
    result = SafeTable(
        title=Text(terminal_safe(title)) if title else None,
        title_justify="left",
        header_style="bold",
    )
    for column in columns:
        result.add_column(column, overflow="fold")
    return result
