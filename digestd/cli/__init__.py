"""The admin CLI: parses arguments, calls the stages, turns DigestError into a one-line error.

The commands live in pipeline.py (ingest, send, feeds, ...), matching.py (match and its
backtest) and people.py (topics, subscribers); common.py holds what they share.
"""

from __future__ import annotations

import sys

from digestd.cli import matching, outbox, people, pipeline  # noqa: F401  (registers the commands)
from digestd.cli.common import State, app
from digestd.errors import DigestError, QueryError

__all__ = ["app", "main"]


def fail(message: str, code: int) -> None:
    """Print ``error: message`` as one unwrapped line on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; DigestError and other failures become one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args or ["--help"], prog_name="digestd", standalone_mode=False)
    except QueryError as exc:
        fail(str(exc), 2)
    except DigestError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # the promise is one line, never a traceback (unless --debug)
        if type(exc).__name__ == "Abort":
            fail("aborted", 130)
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
        if State.debug:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", 70)
    sys.exit(code if isinstance(code, int) else 0)
