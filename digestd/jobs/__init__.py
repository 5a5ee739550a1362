"""The ingest, digest and feeds jobs: they wire the stages. One bad item is logged and counted,
the run goes on. Each job is also a one-shot CLI command and a daemon job."""

from __future__ import annotations

from digestd.jobs.common import match_queries
from digestd.jobs.feeds_job import feeds_out_of_date, run_feeds
from digestd.jobs.ingest_job import FileOutcome, IngestReport, run_ingest
from digestd.jobs.plan_job import PreparedDigest, prepare_digests
from digestd.jobs.plan_window import candidate
from digestd.jobs.reports import DigestOutcome, Progress, SendReport
from digestd.jobs.send_job import run_send
from digestd.jobs.senders import open_sender, start_warnings
from digestd.runtime import utc_now  # the CLI reads the clock here; tests set it here

__all__ = [
    "DigestOutcome",
    "FileOutcome",
    "IngestReport",
    "PreparedDigest",
    "Progress",
    "SendReport",
    "candidate",
    "feeds_out_of_date",
    "match_queries",
    "open_sender",
    "prepare_digests",
    "run_feeds",
    "run_ingest",
    "run_send",
    "start_warnings",
    "utc_now",
]
