"""Several send runs on one database at the same moment: every due subscriber gets one digest.

Each run is a real ``digestd send --now`` process with a data folder of its own, as two
machines would have, sharing only the database: a SQLite file, or a PostgreSQL database. The
database alone keeps them apart (one open digest per subscriber, each digest claimed by one run,
its papers checked at the claim), so nothing depends on a lock file or a clock of one process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import jobs, store
from digestd.config import load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.models import Delivery, Subscriber
from tests.support.outbox_site import QUERY, T0, server_fixture  # noqa: F401  (the server)
from tests.support.smtp_faults import FaultServer
from tests.test_postgres import postgres_url  # noqa: F401  (the PostgreSQL fixture)

PEOPLE = 60
SECRET = "one-secret-for-every-node-of-the-installation"


def node_config(folder: Path, database_url: str) -> Path:
    """A config file for one node: its own data folder, the shared database and secret."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digestd.toml"
    path.write_text(
        f'[paths]\ndata_dir = "{folder / "data"}"\n\n'
        f'[database]\nurl = "{database_url}"\n\n'
        '[smtp]\nfrom_address = "papers@digest.example.org"\n\n'
        f'[digest]\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    return path


def prepared_database(config: Path, sample_path: Path) -> Engine:
    """The shared database, migrated, with the sample and PEOPLE subscribers due now."""
    settings = load_settings(config, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [sample_path])
    with session_scope(engine) as session:
        for number in range(PEOPLE):
            store.add_subscriber(
                session,
                f"reader{number:03d}@example.org",
                queries=[QUERY],
                send_hour=0,
                now=T0 - timedelta(days=1),
            )
    return engine


def outbox(engine: Engine) -> list[tuple[str, Delivery]]:
    with session_scope(engine) as session:
        found = session.exec(select(Delivery, Subscriber.email).join(Subscriber)).all()
    return [(email, delivery) for delivery, email in found]


def run_counts(stdout: str) -> dict[str, int]:
    """The figures of a send run's summary line ("60 due: 34 sent, ..., 26 left to ...")."""
    summary = " ".join(stdout.split())
    found = {"due": int(re.search(r"(\d+) due:", summary)[1])}  # type: ignore[index]
    for name in ("sent", "nothing new", "left to another run"):
        match = re.search(rf"(\d+) (?:with )?{name}", summary)
        found[name] = int(match[1]) if match else 0
    return found


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database for every node: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.slow
def test_two_send_runs_at_once_send_each_subscriber_one_digest(
    database_url: str, tmp_path: Path, server: FaultServer, sample_path: Path
) -> None:
    configs = [node_config(tmp_path / f"node{n}", database_url) for n in (1, 2)]
    engine = prepared_database(configs[0], sample_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")},
        "DIGESTD_DELIVERY_BACKEND": "smtp",
        "DIGESTD_SMTP_HOST": server.host,
        "DIGESTD_SMTP_PORT": str(server.port),
        "DIGESTD_SMTP_CONNECTIONS": "3",
    }
    server.reply_delay = 0.03  # slow enough that both runs are sending at the same time
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "digestd", "--config", str(config), "send", "--now"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for config in configs
    ]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (stdout, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stderr + stdout

    received = [m for m in server.messages if not m.dropped]
    per_reader = Counter(to for m in received for to in m.rcpt_tos)
    assert len(per_reader) == PEOPLE and set(per_reader.values()) == {1}, per_reader
    rows = outbox(engine)
    assert Counter(d.status for _, d in rows) == {"sent": PEOPLE}
    assert sorted(m.message_id for m in received) == sorted(d.message_id for _, d in rows)
    # Each run accounts for every due digest: sent, nothing new, or left to the other run
    # (they usually share the work; which run sends which digest is a race, so the split is
    # not asserted).
    counts = [run_counts(stdout) for stdout, _ in results]
    assert sum(c["sent"] for c in counts) == PEOPLE, counts
    for c in counts:
        assert c["sent"] + c["nothing new"] + c["left to another run"] == c["due"] == PEOPLE
    engine.dispose()
