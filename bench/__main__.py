"""Run the benchmark suite: ``python -m bench [NAME ...] [--quick]``.

Each benchmark runs in its own process, so its peak memory is its own, and prints a table of
figures beside a baseline measured in the same process on the same data. ``--quick`` shrinks
every size (a smoke run, not figures to quote).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHMARKS = ("match", "render", "send", "ingest", "e2e")


def main() -> int:
    """Run the chosen benchmarks (all by default) one after another; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*BENCHMARKS, []],
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    failed = []
    started = time.perf_counter()
    for name in args.names or BENCHMARKS:
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
    print(f"suite finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
