"""Shared fixtures: a config in a temporary folder, the CLI runner, a real SMTP server."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digestd.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "digestd" / "data" / "sample-mar14.txt"


@pytest.fixture
def sample_path() -> Path:
    return SAMPLE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file keeping all data under tmp_path/data, with the file mail backend."""
    for name in list(__import__("os").environ):
        if name.startswith("DIGESTD_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[paths]
data_dir = "{tmp_path / "data"}"

[smtp]
from_address = "papers@digest.example.org"
from_name = "Paper Digest"

[feeds]
base_url = "https://digest.example.org"
""",
        encoding="utf-8",
    )
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(config_file: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``digestd --config <tmp config> ARGS`` in process; returns exit code and output."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(["--config", str(config_file), *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps every message and refuses chosen recipients with 550."""

    refuse: set[str] = field(default_factory=set)
    envelopes: list[Envelope] = field(default_factory=list)
    connections: int = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(e.original_content or b"", policy=policy.default)  # type: ignore[misc]
            for e in self.envelopes
        ]


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on a free loopback port."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()
