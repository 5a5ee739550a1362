"""The SMTP sender's security modes and login, against real aiosmtpd servers with TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from digestd.deliver import OutgoingMessage, SmtpSender, build_message
from digestd.render import RenderedMail
from tests.conftest import RecordingHandler, free_port

USER, PASSWORD = "digest", "s3cret"


def authenticate(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers a failure with 535 (by default it answers nothing)
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def start_server(ca: trustme.CA, **options: object) -> Iterator[tuple[int, RecordingHandler]]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        **options,
    )
    controller.start()
    yield port, handler
    controller.stop()


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[tuple[int, RecordingHandler]]:
    yield from start_server(ca, tls_context=server_context(ca), require_starttls=True)


@pytest.fixture
def implicit_tls_server(ca: trustme.CA) -> Iterator[tuple[int, RecordingHandler]]:
    # aiosmtpd does not see implicit TLS as TLS; the whole connection is encrypted here
    yield from start_server(ca, ssl_context=server_context(ca), auth_require_tls=False)


def message() -> OutgoingMessage:
    rendered = RenderedMail(subject="1 new paper for you — Mar 14", html="<p>hi</p>", text="hi\n")
    return build_message(
        rendered,
        from_address="papers@example.org",
        from_name="Papers",
        to_address="a@example.org",
        to_name="A",
        list_id="digest.example.org",
        unsubscribe_url="https://example.org/u/x",
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_login_over_tls_delivers(
    mode: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    fixture = "starttls_server" if mode == "starttls" else "implicit_tls_server"
    port, handler = request.getfixturevalue(fixture)
    async with SmtpSender(
        host="127.0.0.1",
        port=port,
        security=mode,
        username=USER,
        password=PASSWORD,
        ca_file=ca_file,
        timeout=10,
    ) as sender:
        result = await sender.send(message())
    assert result.ok, result.reply
    [envelope] = handler.envelopes
    received = message_from_bytes(envelope.original_content or b"", policy=policy.default)
    assert str(received["Subject"]) == "1 new paper for you — Mar 14"


async def test_wrong_password_is_a_temporary_result_naming_the_login(
    starttls_server: tuple[int, RecordingHandler], ca_file: str
) -> None:
    port, handler = starttls_server
    async with SmtpSender(
        host="127.0.0.1",
        port=port,
        security="starttls",
        username=USER,
        password="wrong",
        ca_file=ca_file,
        timeout=2,
    ) as sender:
        result = await sender.send(message())
    assert result.outcome == "temporary"
    assert result.reply.startswith(f"login to 127.0.0.1:{port} as digest failed: 535 ")
    assert handler.envelopes == []


async def test_untrusted_certificate_is_refused(
    starttls_server: tuple[int, RecordingHandler],
) -> None:
    port, handler = starttls_server
    async with SmtpSender(
        host="127.0.0.1",
        port=port,
        security="starttls",
        username=USER,
        password=PASSWORD,
        timeout=10,
    ) as sender:
        result = await sender.send(message())
    assert result.outcome == "temporary"
    assert result.reply.startswith(f"TLS with 127.0.0.1:{port} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in result.reply
    assert handler.envelopes == []


async def test_security_none_never_sends_a_password_in_clear(
    starttls_server: tuple[int, RecordingHandler],
) -> None:
    port, handler = starttls_server
    async with SmtpSender(
        host="127.0.0.1",
        port=port,
        security="none",
        username=USER,
        password=PASSWORD,
        timeout=10,
    ) as sender:
        result = await sender.send(message())
    assert result.outcome == "temporary"
    assert result.reply.startswith(f"login to 127.0.0.1:{port} as digest failed: ")
    assert handler.envelopes == []
