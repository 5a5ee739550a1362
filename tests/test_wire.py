"""Digests as a real SMTP server receives them: standards-clean, unforgeable headers, signed.

The send job runs with DKIM configured, hostile names and a 200-character unsubscribe URL; the
raw bytes the server received are checked line by line and verified with dkimpy.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import select

from digestd import jobs, store
from digestd.config import DkimSettings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.models import Delivery
from tests.support.smtp_faults import FaultServer, fault_server
from tests.test_message_standards import HEADERS

HOSTILE_NAMES = [
    "Eve\r\nBcc: victim@example.com",
    "Mallory\nX-Injected: 1",
    "=?UTF-8?Q?=0A?=X-Injected: 2",
    "Nul\x00Byte\x00X-Injected: 3",
    "Ünïcode\u2028X-Injected: 4",
    "Plain Reader",
]
EXPECTED_HEADERS = {"DKIM-Signature", *HEADERS}
MUST_BE_SIGNED = {
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        yield running


def header_lines(data: bytes) -> list[bytes]:
    """The raw header block's logical lines (continuations joined)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            lines[-1] += b"\r\n" + line
        else:
            lines.append(line)
    return lines


def test_every_message_on_the_wire_is_clean_and_signed(
    config_file: Path, server: FaultServer, sample_path: Path, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    base = load_settings(config_file, environ={})
    long_base_url = "https://digest.example.org/" + "p" * 140
    settings = dataclasses.replace(
        base,
        smtp=dataclasses.replace(
            base.smtp, host=server.host, port=server.port, from_name="Paper\r\nDigest"
        ),
        delivery=dataclasses.replace(base.delivery, backend="smtp"),
        feeds=dataclasses.replace(base.feeds, base_url=long_base_url),
        dkim=DkimSettings(selector="s2026", domain="", private_key_file=str(key_file)),
    )
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [sample_path])
    with session_scope(engine) as session:
        for number, name in enumerate(HOSTILE_NAMES):
            store.add_subscriber(
                session,
                f"r{number}@example.org",
                name=name,
                queries=["oracle OR sql OR model"],
                send_hour=0,
                now=datetime.now(UTC) - timedelta(days=1),
            )
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert report.count("sent") == len(HOSTILE_NAMES)
    assert server.count == len(HOSTILE_NAMES)
    with session_scope(engine) as session:
        sent_ids = {d.message_id for d in session.exec(select(Delivery)).all()}
    assert set(server.received_message_ids()) == sent_ids

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2026._domainkey.digest.example.org."
        return record

    for received in server.messages:
        data = received.data
        assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        lines = header_lines(data)
        names = [line.split(b":", 1)[0].decode() for line in lines]
        assert sorted(names) == sorted(EXPECTED_HEADERS), names  # each exactly once
        parsed = message_from_bytes(data, policy=policy.default)
        for name in EXPECTED_HEADERS - {"DKIM-Signature"}:
            assert "\n" not in str(parsed[name]) and "\r" not in str(parsed[name])
        assert "X-Injected" not in parsed and "Bcc" not in parsed
        (unsubscribe,) = [line for line in lines if line.startswith(b"List-Unsubscribe:")]
        url = unsubscribe.split(b"<", 1)[1].split(b">", 1)[0]
        assert len(url) >= 200 and url.startswith(long_base_url.encode() + b"/unsubscribe/")
        assert b"=?" not in unsubscribe and b"\r\n" not in unsubscribe  # literal, one line
        assert b"<mailto:papers@digest.example.org?subject=unsubscribe%20" in unsubscribe
        text, html = (part.get_content() for part in parsed.iter_parts())
        assert url.decode() in text and url.decode() in html  # visible in both parts
        assert dkim.verify(data, dnsfunc=dnsfunc)
        signature = dkim.util.parse_tag_value(lines[0].split(b":", 1)[1])
        signed = {name.strip().lower() for name in signature[b"h"].split(b":")}
        assert signed >= MUST_BE_SIGNED
        assert dkim.verify(data.replace(b"Subject: ", b"Subject: X", 1), dnsfunc=dnsfunc) is False
