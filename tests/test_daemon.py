"""The daemon as a subprocess: it ingests a file dropped into its inbox and stops on SIGTERM.
In process: a hanging fetch does not delay the ingest job, and a fetch's feeds rebuild runs on
the default executor."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest

from digestd import daemon
from digestd.config import load_settings
from tests.conftest import CliResult, free_port
from tests.support.source_server import Reply, SourceServer
from tests.support.sources_site import (  # noqa: F401  (the server and site_for fixtures)
    BODY,
    Site,
    SiteFor,
    server_fixture,
    site_for_fixture,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def wait_for(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def healthz(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.slow
def test_daemon_ingests_inbox_publishes_feeds_and_stops_on_sigterm(
    cli,
    config_file: Path,
    tmp_path: Path,
    sample_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    web_port = free_port()
    config_file.write_text(
        config_file.read_text(encoding="utf-8")
        + "\n[schedule]\ningest_interval_minutes = 0.01\nsend_check_minutes = 0.01\n"
        + "inbox_settle_seconds = 1.0\n"
        + f'\n[bounces]\npath = "{tmp_path / "Maildir"}"\ncheck_minutes = 0.01\n'
        + f"\n[web]\nenabled = true\nport = {web_port}\n",
        encoding="utf-8",
    )
    bounces = mailbox.Maildir(tmp_path / "Maildir", create=True)
    result: CliResult = cli("init")
    assert result.code == 0
    assert cli("topic", "add", "oracle", "--query", "oracle").code == 0
    assert (
        cli("subscriber", "add", "ada@example.org", "--query", "oracle", "--send-hour", "0").code
        == 0
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "digestd", "--config", str(config_file), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        data = tmp_path / "data"
        inbox_file = data / "inbox" / "mar14.txt"
        inbox_file.write_bytes(sample_path.read_bytes())
        assert wait_for(lambda: (data / "processed" / "mar14.txt").exists()), "dump not ingested"
        assert not inbox_file.exists()
        assert wait_for(lambda: (data / "feeds" / "oracle.atom").exists()), "feed not written"
        # The web application runs beside the jobs and serves what they made.
        assert wait_for(lambda: healthz(web_port) == 200), "web application not answering"
        feed = httpx.get(f"http://127.0.0.1:{web_port}/feeds/oracle.atom", timeout=5)
        assert feed.status_code == 200
        assert feed.content == (data / "feeds" / "oracle.atom").read_bytes()
        assert wait_for(lambda: any((data / "outbox").glob("*.eml"))), "due digest not sent"
        # A hard bounce of that digest arrives in the bounce maildir: Ada is suppressed.
        sent = next((data / "outbox").glob("*.eml")).read_bytes()
        message_id = message_from_bytes(sent)["Message-ID"]
        dsn = (FIXTURES / "dsn_hard.eml").read_bytes()
        dsn = dsn.replace(b"<a1b2c3d4e5f60718@digest.example.org>", message_id.encode())
        bounces.add(dsn.replace(b"alice@example.org", b"ada@example.org"))
        assert wait_for(lambda: not any((tmp_path / "Maildir" / "new").iterdir()))
        assert "suppressed since" in cli("subscriber", "show", "ada@example.org").out
        assert cli("topic", "add", "sql", "--query", "sql").code == 0  # added while it runs
        assert wait_for(lambda: (data / "feeds" / "sql.atom").exists()), "new topic's feed missing"
        (data / "inbox" / "junk.txt").write_bytes(b"\x00\x00 not a dump")
        assert wait_for(lambda: (data / "quarantine" / "junk.txt.reason").exists())
        assert daemon.poll() is None  # a bad file does not stop the daemon
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, output
    assert "digestd stopped" in output
    assert healthz(web_port) == 0  # the web application stopped with it
    assert "Traceback" not in output
    assert "87 new papers" in output


def test_feeds_out_of_date_follows_topic_changes(cli, config_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from digestd import jobs
    from digestd.config import load_settings
    from digestd.db import make_engine

    assert cli("init").code == 0
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url)
    assert jobs.feeds_out_of_date(settings, engine)  # no index yet
    assert cli("topic", "add", "llm", "--query", "llm").code == 0
    jobs.run_feeds(settings, engine)
    assert not jobs.feeds_out_of_date(settings, engine)
    (settings.folder("feeds") / "hand-made.atom").write_text("<feed/>")
    assert not jobs.feeds_out_of_date(settings, engine)  # a foreign file changes nothing
    time.sleep(0.05)
    assert cli("topic", "remove", "llm").code == 0
    assert jobs.feeds_out_of_date(settings, engine)  # its feed is still published
    assert cli("topic", "add", "llm", "--query", "large language model").code == 0
    jobs.run_feeds(settings, engine)
    assert not jobs.feeds_out_of_date(settings, engine)
    time.sleep(0.05)
    assert cli("topic", "remove", "llm").code == 0
    assert cli("topic", "add", "llm", "--query", "llm*").code == 0  # same slug, new query
    assert jobs.feeds_out_of_date(settings, engine)


@pytest.mark.slow
def test_digestd_web_serves_alone_and_stops_on_sigterm(cli, config_file: Path) -> None:  # type: ignore[no-untyped-def]
    web_port = free_port()
    config_file.write_text(
        config_file.read_text(encoding="utf-8") + f"\n[web]\nport = {web_port}\n",
        encoding="utf-8",
    )
    assert cli("init").code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "digestd", "--config", str(config_file), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert wait_for(lambda: healthz(web_port) == 200), "digestd web not answering"
        page = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5)
        assert page.status_code == 200 and 'id="subscribe"' in page.text
        second = subprocess.run(
            [sys.executable, "-m", "digestd", "--config", str(config_file), "web"],
            capture_output=True,
            env=env,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert second.stderr.splitlines()[-1].startswith(
            f"error: cannot serve on 127.0.0.1:{web_port}"
        )
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output
    assert f"web application on http://127.0.0.1:{web_port}" in output
    assert "Traceback" not in output


def _daemon_site(site_for: SiteFor, sources: list[dict[str, Any]], **fetching: Any) -> Site:
    """A site whose daemon looks into the inbox every 0.6 s and polls its sources at once."""
    site = site_for(sources, **fetching)
    site.config.write_text(
        site.config.read_text(encoding="utf-8")
        + "\n[schedule]\ningest_interval_minutes = 0.01\ninbox_settle_seconds = 0.1\n",
        encoding="utf-8",
    )
    return Site(load_settings(site.config, environ={}), site.engine, site.config)


def test_a_hanging_fetch_does_not_delay_the_ingest_job(
    site_for: SiteFor, server: SourceServer, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "FIRST_FETCH_SECONDS", 0.0)
    url = server.route("/slow", Reply(hang=True))
    site = _daemon_site(site_for, [{"name": "slow", "url": url}], timeout_seconds=30.0)
    stop = threading.Event()
    scheduler = daemon.build_scheduler(site.settings, site.engine, stop=stop)
    scheduler.start()
    try:
        assert wait_for(lambda: server.active == 1, timeout=10), "the fetch never started"
        inbox = site.settings.folder("inbox")
        (inbox / "mar14.txt").write_bytes(sample_path.read_bytes())
        processed = site.settings.folder("processed") / "mar14.txt"
        assert wait_for(processed.exists, timeout=10), "ingest waited for the fetch"
        assert server.active == 1  # the fetch still hangs: ingest did not wait for it
        assert site.papers() == 87
    finally:
        stop.set()
        server.release.set()  # the hanging answer ends: the fetch fails fast, the drain is short
        scheduler.shutdown(wait=True)


def test_feeds_after_a_fetch_are_rebuilt_on_the_default_executor(
    site_for: SiteFor, server: SourceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "FIRST_FETCH_SECONDS", 0.0)
    url = server.route("/cl", Reply(body=BODY))
    site = _daemon_site(site_for, [{"name": "cl", "url": url}])
    events: list[tuple[str, int]] = []

    def recorded(name: str, job: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            result = job(*args, **kwargs)
            events.append((name, threading.get_ident()))
            return result

        return run

    for name in ("run_ingest", "run_fetch", "run_feeds"):
        monkeypatch.setattr(daemon, name, recorded(name, getattr(daemon, name)))
    stop = threading.Event()
    scheduler = daemon.build_scheduler(site.settings, site.engine, stop=stop)
    scheduler.start()
    try:
        fetched = lambda: [i for i, (name, _) in enumerate(events) if name == "run_fetch"]  # noqa: E731
        assert wait_for(lambda: bool(fetched()), timeout=10), "the source was not polled"
        after = fetched()[0]
        assert wait_for(lambda: any(n == "run_feeds" for n, _ in events[after:]), timeout=10)
    finally:
        stop.set()
        scheduler.shutdown(wait=True)
    threads = {name: {thread for n, thread in events if n == name} for name, _ in events}
    assert site.papers() == 87
    # One default worker ran ingest and every feeds rebuild; the fetch ran on its own.
    assert threads["run_feeds"] == threads["run_ingest"] and len(threads["run_ingest"]) == 1
    assert threads["run_fetch"].isdisjoint(threads["run_ingest"])
