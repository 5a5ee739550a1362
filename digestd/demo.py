"""``digestd demo``: the whole pipeline on the bundled sample dump, into a local folder."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from digestd import jobs, store
from digestd.config import DeliverySettings, PathsSettings, Settings
from digestd.db import make_engine, migrate, session_scope
from digestd.errors import InputError

SAMPLE_DUMP = Path(__file__).resolve().parent / "data" / "sample-mar14.txt"

DEMO_TOPICS = (
    ("text-to-sql", "Text-to-SQL", '"text-to-sql" OR title:sql'),
    ("code-llms", "Language models for code", '(code OR program*) AND ("language model" OR llm*)'),
    ("reasoning", "Reasoning", 'reasoning OR "chain of thought" OR "chain-of-thought"'),
    ("efficient-inference", "Efficient inference", "inference AND (efficien* OR latency OR cache)"),
)
DEMO_SUBSCRIBERS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("ada@example.org", "Ada Lovelace", ('title:"small language model" OR slm*',), ("reasoning",)),
    (
        "grace@example.org",
        "Grace Hopper",
        ('"code generation"', "compiler OR debugger"),
        ("text-to-sql",),
    ),
    ("emilie@example.org", "Émilie du Châtelet", ('oracle -"language model"',), ()),
    ("alan@example.org", "Alan Turing", ('"protein folding"',), ()),
)


def demo_settings(folder: Path) -> Settings:
    """Settings that keep everything inside ``folder`` and write mail as .eml files."""
    return Settings(
        paths=PathsSettings(data_dir=str(folder)), delivery=DeliverySettings(backend="file")
    )


def run_demo(folder: Path, *, console: Console) -> None:
    """Ingest the sample, add demo topics and subscribers, send their digests, write the feeds."""
    settings = demo_settings(folder)
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    for name in ("inbox", "processed", "quarantine", "outbox", "feeds"):
        settings.folder(name).mkdir(parents=True, exist_ok=True)
    report = jobs.run_ingest(settings, engine, [SAMPLE_DUMP], reference=date.today())
    console.print(f"ingest: {report.new} new papers, {report.known} already known")
    now = jobs.utc_now()
    with session_scope(engine) as session:
        for slug, title, query in DEMO_TOPICS:
            with contextlib.suppress(InputError):  # already there from an earlier demo run
                store.add_topic(session, slug, query=query, title=title, now=now)
        known = {s.email for s in store.subscribers(session)}
        for email, name, queries, topics in DEMO_SUBSCRIBERS:
            if email not in known:
                store.add_subscriber(
                    session, email, name=name, queries=queries, topic_slugs=topics, now=now
                )
    sent = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    written = jobs.run_feeds(settings, engine)

    if sent.outcomes:
        result = Table(
            "subscriber", "status", "papers", "subject", title="digests", title_justify="left"
        )
        for outcome in sent.outcomes:
            result.add_row(outcome.email, outcome.status, str(outcome.papers), outcome.subject)
        console.print(result)
    else:
        console.print("digests: none this time (every matching paper was sent before)")
    if sent.nothing_new and sent.outcomes:
        console.print(
            f"{sent.nothing_new} {'subscriber' if sent.nothing_new == 1 else 'subscribers'} had "
            "nothing new (run the demo again: nothing is sent twice)"
        )
    console.print(f"emails (.eml): {settings.folder('outbox')}")
    console.print(f"feeds ({len(written)} files): {settings.folder('feeds')} (open index.html)")
