"""The admin CLI: parses arguments, calls the stages, turns DigestError into a one-line error.

The commands live in pipeline.py (ingest, send, feeds, ...), matching.py (match and its
backtest), people.py (topics, subscribers) and sources.py (fetch, sources); common.py holds
what they share, including the exit codes (README, "Exit codes").
"""

from __future__ import annotations

import sys
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from digestd.cli import (  # noqa: F401  (registers the commands)
    matching,
    outbox,
    papers,
    people,
    pipeline,
    sources,
)
from digestd.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    State,
    app,
    error_line,
    exit_code,
)
from digestd.db import database_error
from digestd.errors import DigestError
from digestd.storage import storage_error

__all__ = ["app", "main"]


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` as one unwrapped line on stderr and exit with ``code``."""
    error_line(message)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; DigestError and other failures become one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args or ["--help"], prog_name="digestd", standalone_mode=False)
    except DigestError as exc:
        fail(str(exc), exit_code(exc))
    except SQLAlchemyError as exc:
        # Any command, any query: one line from the driver's words, never SQLAlchemy's
        # statement, parameters or "Background on this error" link.
        if State.debug:
            raise
        error = database_error(exc, url=State.database_url)
        fail(str(error), exit_code(error))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # the promise is one line, never a traceback (unless --debug)
        if type(exc).__name__ == "Abort":
            fail("aborted", EXIT_INTERRUPTED)
        usage_code = getattr(exc, "exit_code", None)
        if hasattr(exc, "format_message") and isinstance(usage_code, int):
            # a usage error found by the argument parser (an empty one follows printed help)
            message = str(exc.format_message())
            if not message.strip():
                sys.exit(usage_code)
            hint = "see digestd --help"
            if "No such option: -" in message and not message.startswith("No such option: --"):
                hint = 'a query starting with "-" goes after "--", e.g. digestd match -- -word'
            fail(f"{message} ({hint})", usage_code)
        if isinstance(exc, OSError) and (stored := storage_error(exc)) is not None:
            fail(str(stored), exit_code(stored))  # a data folder on a full or read-only disk
        if State.debug:
            raise
        unexpected = f"unexpected {type(exc).__name__}: {exc}"
        fail(f"{unexpected} (run with --debug for details)", EXIT_UNEXPECTED)
    sys.exit(code if isinstance(code, int) else 0)
