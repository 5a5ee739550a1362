"""Sources: fetching the configured ``[[sources]]`` over HTTP (or from a local file).

spec.py checks the config entries, gate.py keeps requests to one host one at a time and spaced
(across processes, through a lease in the database), client.py fetches (validators, timeouts,
size limit, retries). Bytes go to ingest/ to be parsed; nothing here parses. Polling and
recording what happened is the fetch job's (digestd/jobs/fetch_job.py).
"""

from __future__ import annotations

from digestd.sources.client import (
    Fetched,
    FetchError,
    NotModified,
    SourceClient,
    Validators,
    retry_after_seconds,
    user_agent,
)
from digestd.sources.gate import HostBusy, HostGate, host_gate
from digestd.sources.spec import SOURCE_FORMATS, SOURCE_KEYS, SourceSpec, source_specs

__all__ = [
    "SOURCE_FORMATS",
    "SOURCE_KEYS",
    "FetchError",
    "Fetched",
    "HostBusy",
    "HostGate",
    "NotModified",
    "SourceClient",
    "SourceSpec",
    "Validators",
    "host_gate",
    "retry_after_seconds",
    "source_specs",
    "user_agent",
]
