"""Message building and the two senders, against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import binascii
import datetime
import email
import email.policy
import email.utils
import itertools
import socket
from collections.abc import Callable, Iterator
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st

from digestd.deliver import (
    FileSender,
    OutgoingMessage,
    SendResult,
    SmtpSender,
    build_message,
    header_text,
    send_concurrently,
)
from digestd.message import _quoted_printable
from digestd.render import RenderedMail
from tests.conftest import CliResult, SmtpServer
from tests.test_message_standards import HEADERS

Cli = Callable[..., CliResult]

UNSUBSCRIBE = "https://digest.example.org/unsubscribe?token=" + "Ab3_-x" * 30 + "&list=ml"
REFUSED = "nobody@example.org"
REACH = "ada@example.net"


def rendered(subject: str = "2 new papers for you — Mar 14") -> RenderedMail:
    return RenderedMail(
        subject=subject,
        html="<html><body><p>" + "Ω naïve 量子 " * 200 + "</p></body></html>",
        text="1.  A paper\n    https://arxiv.org/abs/2403.00001\n\nΩ naïve 量子\n",
    )


def build(**overrides: Any) -> OutgoingMessage:
    options: dict[str, Any] = {
        "from_address": "digest@example.org",
        "from_name": "digestd",
        "to_address": "ada@example.net",
        "to_name": "Ada Lovelace",
        "list_id": "digest.example.org",
        "unsubscribe_url": UNSUBSCRIBE,
    }
    options.update(overrides)
    return build_message(options.pop("rendered", rendered()), **options)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_message_is_multipart_alternative_text_then_html() -> None:
    parsed = parse(build().data)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert "Ω naïve 量子" in parts[0].get_content()
    assert "Ω naïve 量子" in parts[1].get_content()


def test_headers_appear_once_and_list_headers_are_literal() -> None:
    when = datetime.datetime(2025, 3, 14, 6, 30, tzinfo=datetime.UTC)
    data = build(date=when).data
    parsed = parse(data)
    for name in ("Date", "Message-ID", "From", "To", "Subject", "List-Id", "List-Unsubscribe"):
        assert len(parsed.get_all(name) or []) == 1, name
    assert parsed["Date"].datetime == when
    assert parsed["Message-ID"].endswith("@example.org>")
    assert parsed["List-Id"] == "digestd <digest.example.org>"
    assert f"\r\nList-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in data
    assert parsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"


def test_given_message_id_is_used() -> None:
    parsed = parse(build(message_id="<abc.123@example.org>").data)
    assert parsed["Message-ID"] == "<abc.123@example.org>"


def test_crlf_line_endings_and_short_lines() -> None:
    data = build().data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert data.isascii()


def test_header_injection_through_names_and_subject_is_impossible() -> None:
    message = build(
        to_name="Ada\r\nBcc: evil@x",
        from_name="digestd\nX-Evil: 1",
        rendered=rendered("3 new papers\r\nBcc: evil@x\x00\x1b[31m\u2028Cc: evil@y"),
    )
    parsed = parse(message.data)
    assert parsed.get_all("Bcc") is None
    assert parsed.get_all("Cc") is None
    assert parsed.get_all("X-Evil") is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ada@example.net"]
    assert parsed["To"].addresses[0].display_name == "Ada Bcc: evil@x"
    assert "\n" not in parsed["Subject"] and "\x00" not in parsed["Subject"]
    assert parsed["Subject"].startswith("3 new papers Bcc: evil@x")


def test_injection_through_addresses_is_refused() -> None:
    with pytest.raises(ValueError):
        build(to_address="ada@example.net\r\nBcc: evil@x")


def test_non_ascii_display_name_and_subject_round_trip() -> None:
    subject = "7 new papers for you — Mar 14 · 量子 Ω naïve " + "long words " * 10
    data = build(from_name="Dígest Ωmega", to_name="Zoë 量子", rendered=rendered(subject)).data
    assert b"=?utf-8?" in data  # RFC 2047 encoded words, not raw UTF-8
    parsed = parse(data)
    assert parsed["From"].addresses[0].display_name == "Dígest Ωmega"
    assert parsed["From"].addresses[0].addr_spec == "digest@example.org"
    assert parsed["To"].addresses[0].display_name == "Zoë 量子"
    assert parsed["Subject"] == subject.strip()
    # A non-ASCII description is left out of List-Id rather than encoded.
    assert parsed["List-Id"] == "<digest.example.org>"


async def test_file_sender_writes_parseable_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    async with FileSender(outbox) as sender:
        first = await sender.send(build())
        second = await sender.send(build(to_address="bob+tag@example.net"))
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    assert first.ok and second.ok
    assert first.outcome == second.outcome == "sent"
    assert {first.reply, second.reply} == {str(f) for f in files}
    assert "bob+tag@example.net" in Path(second.reply).name
    parsed = parse(Path(first.reply).read_bytes())
    assert parsed["Message-ID"] == first.message_id
    assert parsed.get_content_type() == "multipart/alternative"
    assert not list(outbox.glob(".*"))  # no temporary files left behind


class RecordingHandler:
    """Records every accepted envelope, counts connections, refuses one address."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.connections = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def recording_server() -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=unused_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


async def test_smtp_sender_reuses_one_connection_and_reports_refusals(
    recording_server: tuple[Controller, RecordingHandler],
) -> None:
    controller, handler = recording_server
    addresses = ["ada@example.net", REFUSED, "bob@example.net"]
    results: list[SendResult] = []
    async with SmtpSender(host="127.0.0.1", port=controller.port) as sender:
        for address in addresses:
            results.append(await sender.send(build(to_address=address)))

    assert [r.ok for r in results] == [True, False, True]
    assert [r.outcome for r in results] == ["sent", "permanent", "sent"]
    assert results[1].recipient == REFUSED
    assert results[1].reply == "550 5.1.1 no such user"
    assert results[0].reply.startswith("250 ")
    assert handler.connections == 1
    assert [e.rcpt_tos for e in handler.envelopes] == [["ada@example.net"], ["bob@example.net"]]
    for envelope, result in zip(handler.envelopes, (results[0], results[2]), strict=True):
        assert envelope.mail_from == "digest@example.org"
        parsed = parse(envelope.original_content)
        assert parsed["Message-ID"] == result.message_id
        assert parsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
        assert parsed.get_body(("plain",)) is not None


async def test_smtp_sender_reconnects_once_after_the_server_dropped() -> None:
    handler = RecordingHandler()
    # The server closes connections idle for more than a fraction of a second.
    controller = Controller(handler, hostname="127.0.0.1", port=unused_port(), timeout=0.3)
    controller.start()
    try:
        async with SmtpSender(host="127.0.0.1", port=controller.port) as sender:
            assert (await sender.send(build())).ok
            await asyncio.sleep(0.8)
            assert (await sender.send(build(to_address="bob@example.net"))).ok
    finally:
        controller.stop()
    assert handler.connections == 2
    assert [e.rcpt_tos for e in handler.envelopes] == [["ada@example.net"], ["bob@example.net"]]


async def test_unreachable_server_gives_temporary_results_not_an_error() -> None:
    port = unused_port()
    async with SmtpSender(host="127.0.0.1", port=port, timeout=5) as sender:
        result = await sender.send(build())
    assert result.outcome == "temporary" and not result.ok
    assert result.reply.startswith(f"connection refused by 127.0.0.1:{port}: ")


# The message writer: what the stdlib parser reads back, and the line rules of RFC 5322/2045.

# Display names and subjects from anywhere: scripts, punctuation that needs quoting, quotes and
# backslashes, things that look like encoded words, control characters and line breaks.
any_text = st.text(
    st.one_of(
        st.sampled_from(list(' "\\()<>[]:;@,.=?_\r\n\t\x00\x1b\u2028Ωé量😀')),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=120,
)


def raw_header(data: bytes, name: str) -> bytes:
    """The header ``name`` as written, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    [line] = [line for line in head.split(b"\r\n") if line.startswith(name.encode() + b":")]
    return line


def lf_to_crlf(text: str) -> str:
    """``text`` as a part reads back: CRLF line ends, and one at the end."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return (text if text.endswith("\n") else text + "\n").replace("\n", "\r\n")


def body_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")


@settings(max_examples=300, deadline=None)
@given(from_name=any_text, to_name=any_text, subject=any_text)
@pytest.mark.slow
def test_names_and_subjects_round_trip_through_the_parser(
    from_name: str, to_name: str, subject: str
) -> None:
    message = build(from_name=from_name, to_name=to_name, rendered=rendered(subject))
    data = message.data
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = parse(data)
    assert parsed.defects == []
    assert str(parsed["Subject"]) == header_text(subject)
    for field, name, address in (("From", from_name, "digest@example.org"), ("To", to_name, REACH)):
        [mailbox] = parsed[field].addresses
        assert mailbox.addr_spec == address
        expected = header_text(name)
        if raw_header(data, field).count(b"=?utf-8?") > 1:
            # A long name takes several encoded words. RFC 2047 says the space between them is
            # not part of the text, but Python 3.11's parser keeps it in display names (and so
            # reads its own writer's output the same way), so here spaces are not compared.
            assert "".join(mailbox.display_name.split()) == "".join(expected.split())
        else:
            assert mailbox.display_name == expected
    assert set(parsed.keys()) == HEADERS


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400), html=st.text(max_size=400))
def test_parts_are_quoted_printable_with_short_lines_and_round_trip(text: str, html: str) -> None:
    data = build(rendered=RenderedMail(subject="s", html=html, text=text)).data
    assert all(len(line) <= 76 for line in body_lines(data))
    plain, rich = parse(data).iter_parts()
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert rich["Content-Transfer-Encoding"] == "quoted-printable"
    # Every line end is written as CRLF; the parser hands them back as they are on the wire.
    assert plain.get_content() == lf_to_crlf(text)
    assert rich.get_content() == lf_to_crlf(html)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.text(st.sampled_from(list("ab =.\t\ré€😀")), max_size=90), max_size=8),
    cuts=st.sets(st.integers(0, 8)),
    final_newline=st.booleans(),
)
def test_encoding_by_pieces_is_encoding_the_whole_text(
    lines: list[str], cuts: set[int], final_newline: bool
) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    whole = text.replace("\r\n", "\n").replace("\r", "\n")
    whole = whole if whole.endswith("\n") else whole + "\n"
    expected = binascii.b2a_qp(whole.encode(), istext=True).replace(b"\n", b"\r\n")
    # The text cut after some of its line ends, as the renderer cuts its output.
    ends = [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    marks = [0, *sorted(ends[c] for c in cuts if c < len(ends)), len(text)]
    pieces = tuple((text[a:b], a % 2 == 0) for a, b in itertools.pairwise(marks))
    assert "".join(piece for piece, _ in pieces) == text
    encoded = _quoted_printable(text)
    # binascii's own output, except where it lets a line reach 77 bytes (an encoded space or
    # tab at a line end): such a line is cut once more, and the text decodes the same.
    lines = encoded.split(b"\r\n")
    assert max(len(line) for line in lines) <= 76
    assert binascii.a2b_qp(encoded.replace(b"\r\n", b"\n")) == whole.encode()
    if max(len(line) for line in expected.split(b"\r\n")) <= 76:
        assert encoded == expected
    for _ in range(3):  # the second and third time, pieces come from the cache
        assert _quoted_printable(text, pieces) == encoded


def test_long_lines_and_trailing_spaces_survive_quoted_printable() -> None:
    line = "x" * 500 + " ends with spaces   "
    text = f"{line}\n.starts with a dot\n\nFrom the start\n"
    data = build(rendered=RenderedMail(subject="s", html=f"<p>{line}</p>", text=text)).data
    assert all(len(part) <= 76 for part in body_lines(data))
    plain, rich = parse(data).iter_parts()
    assert plain.get_content() == lf_to_crlf(text)
    assert rich.get_content() == f"<p>{line}</p>\r\n"


def test_boundary_is_unique_per_message() -> None:
    first, second = parse(build().data), parse(build().data)
    assert first.get_boundary() != second.get_boundary()
    assert first["Message-ID"] != second["Message-ID"]


def test_same_content_as_the_standard_library_writes() -> None:
    when = datetime.datetime(2025, 3, 14, 6, 30, tzinfo=datetime.UTC)
    ours = parse(build(date=when, message_id="<m@example.org>").data)
    theirs = EmailMessage(policy=email.policy.SMTP)
    theirs["From"] = Address("digestd", addr_spec="digest@example.org")
    theirs["To"] = Address("Ada Lovelace", addr_spec="ada@example.net")
    theirs["Subject"] = rendered().subject
    theirs["Date"] = email.utils.format_datetime(when)
    theirs["Message-ID"] = "<m@example.org>"
    theirs.set_content(rendered().text, charset="utf-8", cte="quoted-printable")
    theirs.add_alternative(rendered().html, subtype="html", charset="utf-8", cte="quoted-printable")
    theirs = parse(theirs.as_bytes())
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert str(ours[name]) == str(theirs[name]), name
    assert ours.get_content_type() == theirs.get_content_type()
    for mine, reference in zip(ours.iter_parts(), theirs.iter_parts(), strict=True):
        assert mine.get_content_type() == reference.get_content_type()
        assert mine.get_content() == reference.get_content()


@pytest.mark.parametrize(
    "overrides",
    [
        {"from_address": "digest@example.org\r\nBcc: evil@x"},
        {"to_address": "ada@example.net>, evil@x"},
        {"to_address": "Ada <ada@example.net>"},
        {"to_address": "zoë@example.net"},
        {"to_address": ""},
        {"list_id": "digest\r\nBcc: evil@x <x>"},
        {"unsubscribe_url": "https://x.org/u>\r\nBcc: evil@x"},
        {"message_id": "<a@b>\r\nBcc: evil@x \u2028 Ω"},
    ],
)
def test_injection_through_addresses_and_list_headers_is_refused_or_neutral(
    overrides: dict[str, str],
) -> None:
    try:
        message = build(**overrides)
    except ValueError:
        return
    parsed = parse(message.data)
    assert parsed.get_all("Bcc") is None
    assert all(len(parsed.get_all(name) or []) == 1 for name in ("To", "From", "List-Id"))


def test_non_ascii_unsubscribe_url_is_percent_encoded_on_one_line() -> None:
    data = build(unsubscribe_url="https://exämple.org/u?t=Ω").data
    assert b"\r\nList-Unsubscribe: <https://ex%C3%A4mple.org/u?t=%CE%A9>\r\n" in data


async def test_send_concurrently_works_each_item_once_in_order() -> None:
    running = 0
    most = 0

    async def work(item: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (item % 3))
        running -= 1
        return item * 10

    assert await send_concurrently(range(20), work, limit=3) == [i * 10 for i in range(20)]
    assert most == 3


async def test_send_concurrently_finishes_in_flight_work_then_raises() -> None:
    started: list[int] = []
    finished: list[int] = []

    async def work(item: int) -> int:
        started.append(item)
        if item == 1:
            raise ConnectionError("lost")
        await asyncio.sleep(0.01)
        finished.append(item)
        return item

    with pytest.raises(ConnectionError):
        await send_concurrently(range(10), work, limit=3)
    assert sorted(started) == [0, 1, 2]  # nothing new started after the failure
    assert sorted(finished) == [0, 2]  # the ones in flight were finished


async def test_pool_of_three_connections_delivers_every_message_exactly_once(
    smtp_server: SmtpServer,
) -> None:
    addresses = [f"reader{i}@example.net" for i in range(30)]
    async with SmtpSender(host=smtp_server.host, port=smtp_server.port, connections=3) as sender:
        results = await send_concurrently(
            [build(to_address=a) for a in addresses], sender.send, limit=sender.connections
        )
    assert [r.recipient for r in results] == addresses and all(r.ok for r in results)
    assert sorted(e.rcpt_tos[0] for e in smtp_server.handler.envelopes) == sorted(addresses)
    ids = [str(m["Message-ID"]) for m in smtp_server.handler.messages()]
    assert sorted(ids) == sorted(r.message_id for r in results)
    assert smtp_server.handler.connections == 3


@pytest.mark.slow
def test_send_job_with_a_pool_sends_each_digest_once(
    cli: Cli, config_file: Path, sample_path: Path, smtp_server: SmtpServer
) -> None:
    text = config_file.read_text(encoding="utf-8").replace(
        "[smtp]\n",
        f'[smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\nconnections = 3\n',
    )
    config_file.write_text(text + '\n[delivery]\nbackend = "smtp"\n', encoding="utf-8")
    assert cli("init").code == 0
    assert cli("ingest", str(sample_path)).code == 0
    readers = [f"reader{i}@example.org" for i in range(12)]
    for reader in readers:
        assert cli("subscriber", "add", reader, "--query", "model").code == 0
    assert cli("send", "--now").code == 0
    assert sorted(e.rcpt_tos[0] for e in smtp_server.handler.envelopes) == sorted(readers)
    assert 1 < smtp_server.handler.connections <= 3
    assert cli("send", "--now").code == 0  # everything was recorded: nothing goes twice
    assert len(smtp_server.handler.envelopes) == len(readers)


def test_whitespace_encoded_at_a_line_end_still_keeps_lines_short() -> None:
    # binascii.b2a_qp lets such a line reach 77 bytes (found by the property test above).
    html = "0\x1f\x1f\x80\x80𐀀𐀀𐀀𐀀𐀀00000\x08\x80\x80\x80\x80𐀀𐀀𐀀\t"
    data = build(rendered=RenderedMail(subject="s", html=html, text="")).data
    assert max(len(line) for line in body_lines(data)) <= 76
    body = parse(data).get_body(("html",))
    assert body is not None and body.get_content().rstrip("\r\n") == html
