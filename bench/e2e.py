"""Benchmark ``e2e``: 100k subscribers, one day of 1,000 papers, ingest -> match -> render ->
send to a local SMTP sink, through digestd's own jobs, with the time of each stage.

The subscribers (each with one keyword query from the bench profile mix, one in three also
following one of 20 topics) are written to a fresh SQLite database before the clock starts.
Then the clock runs over: ingesting the day's dump file, and one send run (``run_send``, as
``digestd send --now`` does it) that plans, renders, sends over SMTP to an aiosmtpd sink in
another process, and records every digest.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from bench.common import Report, is_quick, peak_rss_mib, timed
from bench.data import dump_text, synthetic_papers, synthetic_profiles
from bench.sink import smtp_sink
from digestd import jobs
from digestd.config import DeliverySettings, PathsSettings, Settings, SmtpSettings
from digestd.db import make_engine, migrate
from digestd.models import Follow, Profile, Subscriber, Topic

DAY = date(2026, 3, 14)
TOPICS = 20
CONNECTIONS = 4


def add_subscribers(engine: Engine, count: int) -> None:
    """``count`` subscribers with one query each, a third also following a topic (bulk)."""
    now = datetime.now(UTC)
    rng = random.Random(11)
    queries = synthetic_profiles(count + TOPICS, seed=12)
    with engine.begin() as connection:
        connection.execute(
            insert(Topic),
            [
                {
                    "slug": f"topic-{i}",
                    "title": f"Topic {i}",
                    "query": queries[count + i],
                    "created_at": now,
                }
                for i in range(TOPICS)
            ],
        )
        connection.execute(
            insert(Subscriber),
            [
                {
                    "email": f"reader{i}@example.org",
                    "name": f"Reader {i}",
                    "timezone": "UTC",
                    "frequency": "daily",
                    "send_hour": 0,
                    "weekday": "mon",
                    "active": True,
                    "created_at": now,
                }
                for i in range(count)
            ],
        )
        connection.execute(
            insert(Profile),
            [{"subscriber_id": i + 1, "query": queries[i]} for i in range(count)],
        )
        connection.execute(
            insert(Follow),
            [
                {"subscriber_id": i + 1, "topic_id": rng.randrange(TOPICS) + 1}
                for i in range(count)
                if i % 3 == 0
            ],
        )


def main() -> None:
    """Run the pipeline once and print the time of each stage."""
    quick = is_quick()
    subscribers = 2_000 if quick else 100_000
    report = Report(f"e2e: {subscribers:,} subscribers, one day of 1,000 papers, SMTP to a sink")
    with tempfile.TemporaryDirectory() as folder:
        with smtp_sink() as sink:
            settings = Settings(
                paths=PathsSettings(data_dir=folder),
                delivery=DeliverySettings(backend="smtp"),
                smtp=SmtpSettings(host="127.0.0.1", port=sink.port, connections=CONNECTIONS),
            )
            engine = make_engine(settings.database_url, create=True)
            migrate(engine)
            with timed() as setup:
                add_subscribers(engine, subscribers)
            dump = Path(folder) / "day.txt"
            dump.write_text(dump_text(synthetic_papers(1_000), DAY), encoding="utf-8")

            with timed() as ingest:
                ingested = jobs.run_ingest(settings, engine, [dump], reference=DAY)
            with timed() as send:
                sent = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
        received = sink.received()  # the sink has stopped: its count is final
    total = ingest.wall + send.wall
    delivered = sent.count("sent")
    report.figure("setup (not timed): subscribers written", f"{setup.wall:.1f} s")
    report.figure("ingest: papers stored", f"{ingested.new:,} in {ingest.wall:.2f} s")
    for stage, seconds in sent.seconds.items():
        report.figure(f"send run: {stage}", f"{seconds:.1f} s")
    report.figure("send run: wall", f"{send.wall:.1f} s ({send.cpu:.1f} s CPU in this process)")
    report.figure("digests sent / received by the sink", f"{delivered:,} / {received:,}")
    report.figure("nothing new (no mail)", f"{sent.nothing_new:,}")
    report.figure("digests per second, end to end", f"{delivered / total:,.0f}")
    report.figure("total wall time (ingest + send run)", f"{total:.1f} s")
    report.figure("peak RSS", f"{peak_rss_mib():,.0f} MiB")
    report.note(
        f"SMTP: {CONNECTIONS} connections to aiosmtpd in its own process. The send-run stages are"
        " summed over digests; with several connections they overlap, so they add up to more"
        " than the wall time."
    )
    report.print()


if __name__ == "__main__":
    main()
