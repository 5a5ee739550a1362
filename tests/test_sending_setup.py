"""How digestd presents itself to receiving servers: the EHLO name ([smtp] helo_name) and the
warnings `digestd send`, `digestd web` and the daemon give once at start when the setup makes
mail look wrong (a `localhost` EHLO name, an http one-click unsubscribe link)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digestd import web
from digestd.config import load_settings
from digestd.daemon import run_daemon
from digestd.db import make_engine, migrate
from digestd.jobs import senders
from digestd.runtime import Runtime
from digestd.web.mails import send_sign_up_mail
from tests.conftest import CliResult
from tests.support.smtp_faults import FaultServer, fault_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        yield running


def configure(config_file: Path, **sections: dict[str, object]) -> None:
    """Add keys to the test config (which has [paths], [smtp] and [feeds] already)."""
    text = config_file.read_text(encoding="utf-8")
    for section, keys in sections.items():
        lines = "".join(f"{key} = {_toml(value)}\n" for key, value in keys.items())
        header = f"[{section}]\n"
        text = (
            text.replace(header, header + lines) if header in text else text + "\n" + header + lines
        )
    config_file.write_text(text, encoding="utf-8")


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


def smtp_to(config_file: Path, server: FaultServer, **smtp: object) -> None:
    configure(
        config_file,
        smtp={"host": server.host, "port": server.port, "timeout": 5.0, **smtp},
        delivery={"backend": "smtp"},
    )


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make this machine's name (our seam, digestd.jobs.senders.machine_name) what a test says."""

    def name(value: str) -> None:
        monkeypatch.setattr(senders, "machine_name", lambda: value)

    return name


# --- the EHLO name ------------------------------------------------------------------------


def test_helo_name_is_what_the_server_sees_for_digests_and_sign_up_mails(
    cli: Callable[..., CliResult], config_file: Path, server: FaultServer, sample_path: Path
) -> None:
    smtp_to(config_file, server, helo_name="mail.digest.example.org")
    assert cli("init").code == 0
    assert cli("ingest", str(sample_path)).code == 0
    assert cli("subscriber", "add", "ada@example.org", "--query", "oracle OR model").code == 0
    sent = cli("send", "--now")
    assert sent.code == 0 and server.count == 1, sent.err
    assert server.helo_names == ["mail.digest.example.org"]
    assert warnings_in(sent.err) == []
    # The sign-up mails go through the same sender.
    settings = load_settings(config_file, environ={})
    now = datetime.now(UTC)
    assert asyncio.run(
        send_sign_up_mail(
            Runtime(settings, make_engine(settings.database_url)),
            kind="already",
            subscriber_id=7,
            email="bo@example.org",
            now=now,
        )
    )
    assert server.helo_names == ["mail.digest.example.org"] * 2 and server.count == 2


def test_without_helo_name_the_machine_gives_its_own_name(
    cli: Callable[..., CliResult], config_file: Path, server: FaultServer, sample_path: Path
) -> None:
    smtp_to(config_file, server)
    assert cli("init").code == 0
    assert cli("ingest", str(sample_path)).code == 0
    assert cli("subscriber", "add", "ada@example.org", "--query", "oracle OR model").code == 0
    assert cli("send", "--now").code == 0
    assert server.helo_names == [socket.getfqdn()] == [senders.machine_name()]


@pytest.mark.parametrize(
    "bad", ["mail example org", "mail.example.org\\r\\nRSET", "-mail.org", "[x]"]
)
def test_a_helo_name_that_is_no_host_name_is_refused_at_start(
    cli: Callable[..., CliResult], config_file: Path, bad: str
) -> None:
    configure(config_file, smtp={"helo_name": bad})
    result = cli("send")
    assert result.code == 1 and len(result.err.splitlines()) == 1
    assert "[smtp] helo_name" in result.err and "not a host name" in result.err


# --- the warnings -------------------------------------------------------------------------


def test_a_localhost_name_warns_once_naming_the_key_to_set(
    cli: Callable[..., CliResult],
    config_file: Path,
    server: FaultServer,
    machine: Callable[[str], None],
) -> None:
    smtp_to(config_file, server)
    assert cli("init").code == 0
    machine("mail.example.org")
    quiet = cli("send")
    assert warnings_in(quiet.err) == []
    for name in ("localhost", "localhost.localdomain", "LOCALHOST.example."):
        machine(name)
        result = cli("send")
        [warning] = warnings_in(result.err)
        assert repr(name) in warning and "set [smtp] helo_name" in warning
        assert result.err.count("warning:") == 1 and result.code == quiet.code == 0
    configure(config_file, smtp={"helo_name": "mail.digest.example.org"})
    assert warnings_in(cli("send").err) == []
    # A helo_name of localhost is no better than a machine name of localhost.
    config_file.write_text(
        config_file.read_text().replace("mail.digest.example.org", "localhost"), encoding="utf-8"
    )
    machine("mail.example.org")
    [warning] = warnings_in(cli("send").err)
    assert "[smtp] helo_name is 'localhost'" in warning


def test_an_http_base_url_warns_once_when_mail_goes_out_over_smtp(
    cli: Callable[..., CliResult],
    config_file: Path,
    server: FaultServer,
    machine: Callable[[str], None],
) -> None:
    machine("mail.example.org")
    assert cli("init").code == 0
    config_file.write_text(
        config_file.read_text().replace("https://digest.example.org", "http://digest.example.org"),
        encoding="utf-8",
    )
    assert warnings_in(cli("send").err) == []  # the file backend: no mail leaves
    smtp_to(config_file, server)
    result = cli("send")
    [warning] = warnings_in(result.err)
    assert "'http://digest.example.org'" in warning and "one-click unsubscribe" in warning
    assert "RFC 8058" in warning and "set [feeds] base_url" in warning
    assert [line for line in result.err.splitlines() if line.strip()] == [warning]
    assert result.code == 0
    machine("localhost")
    both = warnings_in(cli("send").err)
    assert len(both) == 2 and "helo_name" in both[0] and "base_url" in both[1]
    config_file.write_text(
        config_file.read_text().replace("http://digest.example.org", "https://digest.example.org"),
        encoding="utf-8",
    )
    machine("mail.example.org")
    assert warnings_in(cli("send").err) == []


def test_the_file_backend_never_warns(
    cli: Callable[..., CliResult], config_file: Path, machine: Callable[[str], None]
) -> None:
    machine("localhost")
    config_file.write_text(config_file.read_text().replace("https://", "http://"), encoding="utf-8")
    assert cli("init").code == 0
    result = cli("send")
    assert result.code == 0 and warnings_in(result.err) == []


def test_the_daemon_and_the_web_command_log_the_warnings_once_at_start(
    cli: Callable[..., CliResult],
    config_file: Path,
    server: FaultServer,
    machine: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machine("localhost")
    smtp_to(config_file, server)
    config_file.write_text(config_file.read_text().replace("https://", "http://"), encoding="utf-8")
    assert cli("init").code == 0
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url)
    migrate(engine)
    caplog.set_level(logging.INFO)
    stop = threading.Event()
    stop.set()  # start, warn, and stop at once
    daemon = threading.Thread(target=run_daemon, args=(settings, engine), kwargs={"stop": stop})
    daemon.start()
    daemon.join(timeout=30)
    assert not daemon.is_alive()
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [("helo_name" in r.getMessage(), "base_url" in r.getMessage()) for r in logged] == [
        (True, False),
        (False, True),
    ]
    caplog.clear()
    monkeypatch.setattr(web, "serve", lambda settings, engine: None)
    assert cli("web").code == 0
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 2 and "helo_name" in logged[0] and "base_url" in logged[1]


def _uts_namespace_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--uts", "sh", "-c", "hostname localhost && hostname"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "localhost"


@pytest.mark.slow
def test_a_machine_really_named_localhost_warns_once(
    cli: Callable[..., CliResult],
    config_file: Path,
    server: FaultServer,
    machine: Callable[[str], None],
    record_property: Callable[[str, object], None],
) -> None:
    """As root: the CLI in a subprocess, in a UTS namespace whose host name is localhost. Not
    as root: the same run in process, with our seam that reads the machine's name saying
    localhost. The test records (and prints) which it used."""
    smtp_to(config_file, server)
    assert cli("init").code == 0
    if _uts_namespace_works():
        mechanism = "a UTS namespace with the host name localhost (root)"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
        command = f"{sys.executable} -m digestd --config {config_file} send"
        run = subprocess.run(
            ["unshare", "--uts", "sh", "-c", f"hostname localhost && exec {command}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )
        code, err = run.returncode, run.stderr
    else:
        mechanism = "the machine_name seam answering localhost (not root)"
        machine("localhost")
        result = cli("send")
        code, err = result.code, result.err
    record_property("mechanism", mechanism)
    print(f"point 8 warning test used {mechanism}")
    [warning] = warnings_in(err)
    assert "'localhost'" in warning and "set [smtp] helo_name" in warning
    assert code == 0, err
    assert server.helo_names == []  # nothing was due: the warning comes before any connection
