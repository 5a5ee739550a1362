"""Bounce and complaint parsing, mailbox reading and VERP addresses."""

from __future__ import annotations

import hashlib
import mailbox
import time
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digestd.bounce_notices import is_bounce_notice, parse_plain_bounce
from digestd.bounces import BounceReport, parse_report
from digestd.errors import InputError
from digestd.mailboxes import MailboxItem, mark_read, read_mailbox
from digestd.tokens import verp_address, verp_subscriber

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BOUNCE_ADDRESS = "papers@digest.example.org"
SECRET = "test-verp-secret"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def dsn(
    recipient_fields: str,
    *,
    report_type: str = "; report-type=delivery-status",
    headers: str = "To: papers@digest.example.org\n",
    notice: str = "This is the mail system at host mail.digest.example.org.\n",
) -> bytes:
    """A Postfix-like DSN with the given per-recipient field groups (blank-line separated)."""
    return f"""\
From: MAILER-DAEMON@mail.digest.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
{headers}Message-Id: <report-1@mail.digest.example.org>
MIME-Version: 1.0
Content-Type: multipart/report{report_type}; boundary="B"

--B
Content-Type: text/plain; charset=us-ascii

{notice}
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.digest.example.org

{recipient_fields}
--B
Content-Type: text/rfc822-headers

From: papers@digest.example.org
To: zoe@example.org
Message-ID: <ours-1@digest.example.org>

--B--
""".encode()


# --- the fixtures -------------------------------------------------------------------------


def test_postfix_hard_bounce() -> None:
    [report] = parse_report(fixture("dsn_hard.eml"))
    assert report == BounceReport(
        key="<20240312060114.4F2A81C0123@mail.digest.example.org>",
        kind="hard",
        recipient="alice@example.org",
        message_id="<a1b2c3d4e5f60718@digest.example.org>",
        envelope_to=("papers@digest.example.org",),
        status="5.1.1",
        reason="550 5.1.1 <alice@example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
    )


def test_postfix_delay_warning_is_soft() -> None:
    [report] = parse_report(fixture("dsn_soft.eml"))
    assert report.kind == "soft"
    assert report.recipient == "bob@example.org"
    assert report.message_id == "<0f1e2d3c4b5a6978@digest.example.org>"
    assert report.status == "4.2.2"
    assert "Mailbox full" in report.reason
    assert report.key == "<20240313100120.9C31D1C0456@mail.digest.example.org>"


def test_arf_complaint() -> None:
    [report] = parse_report(fixture("arf_complaint.eml"))
    assert report == BounceReport(
        key="<fbl.20240314091240.77a1@arf.mail.example.net>",
        kind="complaint",
        recipient="carol@example.org",
        message_id="<99aa88bb77cc66dd@digest.example.org>",
        envelope_to=("abuse@digest.example.org",),
        status="",
        reason="abuse",
    )


def test_gmail_bounce_joins_the_multi_line_reply() -> None:
    [report] = parse_report(fixture("dsn_gmail.eml"))
    assert (report.kind, report.recipient, report.status) == ("hard", "dave@example.com", "5.1.1")
    assert report.message_id == "<5b6c7d8e9fa0b1c2@digest.example.org>"
    assert report.reason.startswith(
        "550 5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces."
    )


def test_exim_bounce_gives_one_report_per_recipient() -> None:
    reports = parse_report(fixture("dsn_exim_multi.eml"))
    # Exim's Status is always 5.0.0: the remote server's own code is the one that says why.
    assert [(r.kind, r.recipient, r.status) for r in reports] == [
        ("hard", "erin@example.net", "5.1.1"),
        ("hard", "frank@example.net", "5.2.2"),
    ]
    assert "Mailbox over quota" in reports[1].reason
    assert {r.message_id for r in reports} == {"<c3d4e5f60718a1b2@digest.example.org>"}
    assert {r.key for r in reports} == {"<E1rkQ2c-0007Vt-Kp@mx1.digest.example.org>"}
    assert reports[0].envelope_to == ("papers@digest.example.org",)


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "kind", "status"),
    [
        # A relay refused our message (policy): not the recipient's fault.
        ("Action: failed\nStatus: 5.7.1", "refused", "5.7.1"),
        ("Action: failed", "hard", ""),
        ("Action: failed\nStatus: bogus", "hard", ""),
        (
            "Action: failed\nStatus: bogus\nDiagnostic-Code: smtp; 550 5.1.2 no such host",
            "hard",
            "5.1.2",
        ),
        # Expired in the queue after temporary failures: the address may well be fine.
        ("Action: failed\nStatus: 4.4.1", "soft", "4.4.1"),
        ("Action: delayed\nStatus: 4.4.7", "soft", "4.4.7"),
        ("Action: delayed", "soft", ""),
        ("Action: delayed\nStatus: 5.0.0", "soft", "5.0.0"),
        ("Status: 5.1.1", "hard", "5.1.1"),
        ("Action: FAILED (permanent)\nStatus: 5.1.1 (user unknown)", "hard", "5.1.1"),
        ("Action: delivered\nStatus: 2.0.0", None, None),
        ("Action: delivered\nStatus: 5.0.0", None, None),
        ("Action: relayed\nStatus: 2.0.0", None, None),
        ("Action: expanded\nStatus: 2.0.0", None, None),
        ("Status: 2.0.0", None, None),
    ],
)
def test_classification(fields: str, kind: str | None, status: str | None) -> None:
    reports = parse_report(dsn(f"Final-Recipient: rfc822; Zoe@Example.org\n{fields}\n"))
    if kind is None:
        assert reports == []
    else:
        [report] = reports
        assert (report.kind, report.status, report.recipient) == (kind, status, "zoe@example.org")
        assert report.message_id == "<ours-1@digest.example.org>"


@pytest.mark.parametrize(
    ("fields", "notice", "kind"),
    [
        # Without a status, the step the notice names decides (Postfix says it in the notice).
        (
            "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 No such user here",
            "<zoe@example.org>: host mx said: 550 No such user here (in reply to RCPT TO command)",
            "hard",
        ),
        (
            "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 Message rejected",
            "<zoe@example.org>: host mx said: 550 Message rejected (in reply to end of DATA "
            "command)",
            "refused",
        ),
        ("Action: failed\nDiagnostic-Code: smtp; 554 Transaction failed", "", "refused"),
        ("Action: failed\nDiagnostic-Code: smtp; 550 Unknown user", "", "hard"),
        # A code later in the diagnostic is not the reply's own.
        ("Action: failed\nDiagnostic-Code: smtp; 554 see https://x.example/5.1.1", "", "refused"),
        ("Action: failed\nStatus: 5.3.4\nDiagnostic-Code: smtp; 552 5.3.4 too big", "", "refused"),
        ("Action: failed\nStatus: 5.7.17", "", "hard"),
    ],
)
def test_permanent_failures_are_classified_by_whose_fault(
    fields: str, notice: str, kind: str
) -> None:
    [report] = parse_report(
        dsn(f"Final-Recipient: rfc822; zoe@example.org\n{fields}\n", notice=notice)
    )
    assert report.kind == kind


def test_a_relay_refusing_our_message_is_refused_not_a_hard_bounce() -> None:
    [report] = parse_report(fixture("dsn_policy.eml"))
    assert (report.kind, report.status, report.recipient) == (
        "refused",
        "5.7.26",
        "grace@gmail.com",
    )
    assert report.reason.startswith("550 5.7.26 This mail has been blocked because the sender is")
    assert not report.plain


def test_only_failed_recipients_are_reported() -> None:
    groups = (
        "Final-Recipient: rfc822; one@example.org\nAction: delivered\nStatus: 2.0.0\n\n"
        "Final-Recipient: rfc822; two@example.org\nAction: failed\nStatus: 5.1.1\n"
    )
    assert [r.recipient for r in parse_report(dsn(groups))] == ["two@example.org"]


def test_original_recipient_is_preferred_to_the_forwarded_one() -> None:
    fields = (
        "Final-Recipient: rfc822; zoe.smith@mailhost.example.org\n"
        "Original-Recipient: rfc822; <zoe@example.org>\nAction: failed\nStatus: 5.1.1\n"
    )
    [report] = parse_report(dsn(fields))
    assert report.recipient == "zoe@example.org"


def test_unusable_recipient_is_none() -> None:
    [report] = parse_report(dsn("Final-Recipient: x400; /C=ZZ/O=nowhere/\nAction: failed\n"))
    assert report.recipient is None


def test_folded_diagnostic_code_is_one_line() -> None:
    fields = (
        "Final-Recipient: rfc822; zoe@example.org\nAction: failed\nStatus: 5.2.1\n"
        "Diagnostic-Code: smtp; 550 5.2.1 The email account\n"
        "\tthat you tried to reach is\n    disabled.\n"
    )
    [report] = parse_report(dsn(fields))
    assert report.reason == "550 5.2.1 The email account that you tried to reach is disabled."


def test_without_diagnostic_code_the_reason_comes_from_the_notice() -> None:
    notice = (
        "This is the mail system at host mail.digest.example.org.\n\n"
        "<zoe@example.org>: host mx.example.org[192.0.2.9] said: 550 5.1.1\n"
        "    <zoe@example.org>: no mailbox here by that name\n"
    )
    [report] = parse_report(
        dsn("Final-Recipient: rfc822; zoe@example.org\nAction: failed\n", notice=notice)
    )
    assert report.reason.startswith("<zoe@example.org>: host mx.example.org[192.0.2.9] said: 550")
    assert report.reason.endswith("no mailbox here by that name")


def test_reason_has_no_control_characters_and_is_bounded() -> None:
    fields = (
        "Final-Recipient: rfc822; zoe@example.org\nAction: failed\n"
        f"Diagnostic-Code: smtp; 550 \x1b[31mgo\x07 away\u202e {'x' * 2000}\n"
    )
    [report] = parse_report(dsn(fields))
    assert report.reason.startswith("550 [31mgo away xxx")
    assert len(report.reason) <= 500
    assert all(ch.isprintable() for ch in report.reason)


def test_utf8_diagnostic_text_is_kept() -> None:
    fields = (
        "Final-Recipient: rfc822; zoe@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 Empfänger unbekannt – Postfach existiert nicht\n"
    )
    [report] = parse_report(dsn(fields))
    assert report.reason == "550 5.1.1 Empfänger unbekannt – Postfach existiert nicht"


def test_report_type_may_be_missing() -> None:
    fields = "Final-Recipient: rfc822; zoe@example.org\nAction: failed\nStatus: 5.1.1\n"
    [report] = parse_report(dsn(fields, report_type=""))
    assert report.kind == "hard"


def test_report_without_message_id_is_keyed_by_its_bytes() -> None:
    data = fixture("dsn_hard.eml").replace(b"Message-Id:", b"X-Old-Message-Id:")
    [report] = parse_report(data)
    assert report.key == "sha256:" + hashlib.sha256(data).hexdigest()
    assert parse_report(data)[0].key == report.key


def test_envelope_addresses_of_the_report() -> None:
    headers = (
        "Delivered-To: Papers+s7-abc@Digest.example.org\n"
        "X-Original-To: papers+s7-abc@digest.example.org\n"
        "To: Papers <papers@digest.example.org>, undisclosed-recipients:;\n"
        "Envelope-To: papers@digest.example.org\n"
    )
    [report] = parse_report(dsn("Action: failed\n", headers=headers))
    assert report.envelope_to == ("papers+s7-abc@digest.example.org", "papers@digest.example.org")


def test_arf_recipient_falls_back_to_the_returned_message() -> None:
    data = fixture("arf_complaint.eml").replace(b"Original-Rcpt-To: <carol@example.org>\n", b"")
    [report] = parse_report(data)
    assert report.recipient == "carol@example.org"


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_arf_reports_that_are_not_complaints(feedback_type: str) -> None:
    data = fixture("arf_complaint.eml").replace(b"abuse", feedback_type.encode())
    assert parse_report(data) == []


def out_of_office() -> bytes:
    message = EmailMessage()
    message["From"] = "zoe@example.org"
    message["To"] = "papers@digest.example.org"
    message["Subject"] = "Out of office: Your digest: 12 new papers"
    message["Auto-Submitted"] = "auto-replied"
    message["Message-ID"] = "<ooo-1@example.org>"
    message.set_content("I am away until Monday. Your message will not be forwarded.")
    return message.as_bytes()


def read_receipt() -> bytes:
    return dsn("Action: failed\n", report_type="; report-type=disposition-notification")


@pytest.mark.parametrize(
    "data",
    [
        out_of_office(),
        fixture("dsn_hard.eml").split(b"\n\n", 1)[0] + b"\n\nplain text\n",
        b"Subject: hello\n\nJust a note.\n",
        b"",
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary\n",
        read_receipt(),
    ],
    ids=["out-of-office", "report-without-parts", "plain", "empty", "no-boundary", "mdn"],
)
def test_other_messages_give_no_reports(data: bytes) -> None:
    assert parse_report(data) == []


# --- plain-text notices -------------------------------------------------------------------

VERP = {
    n: verp_address("bounces@digest.example.org", n, "fixture-secret-for-plain-bounces")
    for n in (1, 2, 3, 4)
}


def test_qmail_failure_notice() -> None:
    [report] = parse_plain_bounce(fixture("plain_qmail.eml"))
    assert (report.kind, report.status, report.recipient) == ("hard", "5.1.1", "ada@example.net")
    assert report.plain and report.envelope_to == (VERP[1],)
    assert report.message_id == "<qmail-digest-1@digest.example.org>"
    # The paragraph about the address, not the words of the returned copy below it.
    assert report.reason.startswith("<ada@example.net>: 192.0.2.25 does not like recipient.")
    assert "User unknown in local recipient table" in report.reason
    assert "5.7.1" not in report.reason
    assert parse_report(fixture("plain_qmail.eml")) == []  # not a DSN


def test_exim_plain_failure_for_our_content_is_refused() -> None:
    [report] = parse_plain_bounce(fixture("plain_exim.eml"))
    assert (report.kind, report.status, report.recipient) == ("refused", "5.7.1", "bea@example.net")
    assert report.reason.endswith("550 5.7.1 Message rejected: content matches a spam signature")
    assert report.message_id == "<exim-digest-2@digest.example.org>"
    assert report.key == "<E1rkQ5z-0008AY-1k@mx1.example.net>"


def test_exim_delay_warning_is_soft() -> None:
    [report] = parse_plain_bounce(fixture("plain_exim_delay.eml"))
    assert (report.kind, report.status, report.recipient) == ("soft", "4.7.1", "dora@example.net")
    assert report.message_id == "<exim-digest-4@digest.example.org>"  # from References


@pytest.mark.parametrize("name", ["vacation_reply.eml", "vacation_sieve.eml"])
def test_auto_replies_are_not_bounces(name: str) -> None:
    assert parse_plain_bounce(fixture(name)) == []
    assert parse_report(fixture(name)) == []


def notice(headers: str, body: str = "") -> bytes:
    return f"{headers}\nTo: {VERP[1]}\n\n{body}".encode()


QMAIL_BODY = fixture("plain_qmail.eml").split(b"\n\n", 1)[1].decode()


@pytest.mark.parametrize(
    ("headers", "bounce"),
    [
        ("From: MAILER-DAEMON@mail.example.net\nSubject: hello", True),
        ("From: postmaster@example.net\nSubject: hello", True),
        ("From: Mail Delivery Subsystem <noreply@example.net>\nSubject: hi", True),
        ("From: x@example.net\nX-Failed-Recipients: zoe@example.org\nSubject: hi", True),
        ("From: x@example.net\nSubject: Undeliverable: 3 new papers", True),
        ("From: x@example.net\nSubject: Returned mail: see transcript for details", True),
        # Exim and Postfix mark their bounces auto-replied: from a mail system, still a bounce.
        ("From: Mailer-Daemon@mx.example.net\nAuto-Submitted: auto-replied\nSubject: x", True),
        # A person's auto-reply, whatever its subject says.
        ("From: zoe@example.org\nAuto-Submitted: auto-replied\nSubject: Delivery failed", False),
        ("From: MAILER-DAEMON@example.net\nX-Autoreply: yes\nSubject: failure notice", False),
        ("From: MAILER-DAEMON@example.net\nPrecedence: auto_reply\nSubject: hi", False),
        ("From: MAILER-DAEMON@example.net\nSubject: Out of Office: failure notice", False),
        # No bounce sign: neither an empty Return-Path nor auto-generated is one.
        ("Return-Path: <>\nFrom: zoe@example.org\nSubject: Re: 3 new papers", False),
        ("From: list@example.net\nAuto-Submitted: auto-generated\nSubject: Held", False),
        ("From: zoe@example.org\nSubject: unsubscribe", False),
    ],
)
def test_what_makes_a_message_a_bounce_notice(headers: str, bounce: bool) -> None:
    data = notice(headers, QMAIL_BODY)
    assert is_bounce_notice(message_from_bytes(data)) == bounce
    assert len(parse_plain_bounce(data)) == int(bounce)


@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (QMAIL_BODY, "hard", "5.1.1"),
        ("<zoe@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n", "hard", "5.1.1"),
        (
            "<zoe@example.org>:\nThis message is looping: it already has my header. (#5.4.6)\n",
            "refused",
            "5.4.6",
        ),
        (
            "<zoe@example.org>:\n192.0.2.5 failed after I sent the message.\nRemote host said: "
            "554 Message refused\n",
            "refused",
            "",
        ),
        (
            "<zoe@example.org>:\n192.0.2.5 does not like recipient.\nRemote host said: "
            "550 sorry, no such user\n",
            "hard",
            "",
        ),
        ("Your message could not be delivered to zoe@example.org.\n", "hard", ""),
        ("<zoe@example.org>:\nRemote host said: 452 4.2.2 Mailbox full\n", "soft", "4.2.2"),
        ("Delivery to zoe@example.org has been delayed. We will keep trying.\n", "soft", ""),
        ("zoe@example.org\n  Delivery attempts will continue for some time.\n", "soft", ""),
    ],
)
def test_what_a_plain_notice_reports(body: str, kind: str, status: str) -> None:
    [report] = parse_plain_bounce(notice("From: MAILER-DAEMON@mail.example.net", body))
    assert (report.kind, report.status, report.recipient) == (
        kind,
        status,
        "zoe@example.org" if "zoe" in body else "ada@example.net",
    )
    assert report.reason and "\n" not in report.reason and len(report.reason) <= 500


@pytest.mark.parametrize("body", ["a" * 90_000, "a@" * 45_000, "<" + "a@" * 40_000 + ">:\n"])
def test_a_hostile_notice_is_read_in_linear_time(body: str) -> None:
    started = time.monotonic()
    [report] = parse_plain_bounce(notice("From: MAILER-DAEMON@mail.example.net", body))
    assert time.monotonic() - started < 2.0  # a quadratic search took 36 s on the first
    assert len(report.reason) <= 500


def test_a_multipart_notice_gives_its_text_and_the_attached_message_id() -> None:
    message = EmailMessage()
    message["From"] = "Mail Delivery System <MAILER-DAEMON@mail.example.net>"
    message["To"] = VERP[1]
    message["Subject"] = "Undelivered Mail Returned to Sender"
    message.set_content("<zoe@example.org>: host mx said: 550 5.2.1 mailbox disabled\n")
    returned = EmailMessage()
    returned["Message-ID"] = "<ours-7@digest.example.org>"
    returned.set_content("the digest")
    message.add_attachment(returned)
    [report] = parse_plain_bounce(message.as_bytes())
    assert (report.kind, report.status) == ("hard", "5.2.1")
    assert report.message_id == "<ours-7@digest.example.org>"


# --- never raises -------------------------------------------------------------------------

ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.eml"))


@given(st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parse_report(data)
    parse_plain_bounce(data)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_inside_a_report_never_raise(noise: bytes) -> None:
    head, _, tail = fixture("dsn_hard.eml").partition(b"Action: failed")
    parse_report(head + noise + tail)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(name=st.sampled_from(ALL_FIXTURES), data=st.data())
@pytest.mark.slow
def test_mangled_fixtures_never_raise(name: str, data: st.DataObject) -> None:
    lines = fixture(name).splitlines(keepends=True)
    doomed = data.draw(st.sets(st.integers(0, len(lines) - 1)))
    kept = [line for number, line in enumerate(lines) if number not in doomed]
    if kept and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(kept) - 1))
        kept[at] = data.draw(st.binary(max_size=80)) + b"\n"
    mangled = b"".join(kept)
    for report in parse_report(mangled) + parse_plain_bounce(mangled):
        assert report.kind in ("hard", "soft", "complaint", "refused")
        assert len(report.reason) <= 500


# --- mailboxes ----------------------------------------------------------------------------

THREE = ["dsn_hard.eml", "dsn_soft.eml", "arf_complaint.eml"]
KINDS = ["hard", "soft", "complaint"]


def kinds(items: list[MailboxItem]) -> list[str]:
    return [report.kind for item in items for report in parse_report(item.data)]


def test_mbox_yields_its_messages_in_order(tmp_path: Path) -> None:
    path = tmp_path / "bounces"
    box = mailbox.mbox(path)
    for name in THREE:
        box.add(fixture(name))
    box.close()
    items = list(read_mailbox(path))
    assert [item.name for item in items] == [f"{path}#1", f"{path}#2", f"{path}#3"]
    assert kinds(items) == KINDS
    mark_read(path, items[0])  # nothing to do for an mbox
    assert len(list(read_mailbox(path))) == 3


def test_single_message_file(tmp_path: Path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(fixture("dsn_hard.eml"))
    assert list(read_mailbox(path)) == [MailboxItem(name=str(path), data=path.read_bytes())]


def test_empty_file_is_an_empty_mailbox(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.write_bytes(b"")
    assert list(read_mailbox(path)) == []


def test_plain_folder_is_read_in_name_order(tmp_path: Path) -> None:
    for number, name in enumerate(THREE):
        (tmp_path / f"{number:02d}.eml").write_bytes(fixture(name))
    (tmp_path / "sub").mkdir()
    items = list(read_mailbox(tmp_path))
    assert [Path(item.name).name for item in items] == ["00.eml", "01.eml", "02.eml"]
    assert kinds(items) == KINDS


def test_maildir_read_then_mark_read(tmp_path: Path) -> None:
    path = tmp_path / "Maildir"
    box = mailbox.Maildir(path)
    keys = [box.add(fixture(name)) for name in THREE]
    # Seen and unseen messages that a mail client has already moved to cur/.
    seen = mailbox.MaildirMessage(fixture("dsn_gmail.eml"))
    seen.set_subdir("cur")
    seen.set_flags("S")
    box.add(seen)
    unseen = mailbox.MaildirMessage(fixture("dsn_exim_multi.eml"))
    unseen.set_subdir("cur")
    unseen.set_flags("F")
    unseen_key = box.add(unseen)
    (path / "new" / ".hidden").write_bytes(b"not a message")
    box.close()

    items = list(read_mailbox(path))
    assert kinds(items) == [*KINDS, "hard", "hard"]  # new/ first, then the unseen in cur/
    for item in items:
        mark_read(path, item)
    assert list(read_mailbox(path)) == []
    box = mailbox.Maildir(path)
    assert all("S" in box.get_message(key).get_flags() for key in [*keys, unseen_key])
    assert box.get_message(unseen_key).get_flags() == "FS"
    assert len(list((path / "cur").iterdir())) == 5
    assert list((path / "new").iterdir()) == [path / "new" / ".hidden"]


def test_mark_read_of_a_vanished_message_is_quiet(tmp_path: Path) -> None:
    path = tmp_path / "Maildir"
    box = mailbox.Maildir(path)
    box.add(fixture("dsn_hard.eml"))
    [item] = list(read_mailbox(path))
    Path(item.name).unlink()
    mark_read(path, item)


def test_mark_read_refuses_a_message_of_another_mailbox(tmp_path: Path) -> None:
    path = tmp_path / "Maildir"
    mailbox.Maildir(path).close()
    with pytest.raises(ValueError, match="not a message of the maildir"):
        mark_read(path, MailboxItem(name=str(tmp_path / "elsewhere"), data=b""))


def test_missing_mailbox_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such-maildir"
    with pytest.raises(InputError, match="no such file or folder") as caught:
        read_mailbox(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_mailbox_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    path = tmp_path / "file" / "below"
    with pytest.raises(InputError, match="Not a directory") as caught:
        read_mailbox(path)
    assert str(path) in str(caught.value)


# --- VERP ---------------------------------------------------------------------------------


def test_verp_address_shape_and_round_trip() -> None:
    address = verp_address(BOUNCE_ADDRESS, 1, SECRET)
    local, _, domain = address.partition("@")
    assert domain == "digest.example.org"
    assert local.startswith("papers+s1-")
    signature = local.removeprefix("papers+s1-")
    assert len(signature) == 10 and signature == signature.lower() and signature.isalnum()
    assert verp_subscriber(address, BOUNCE_ADDRESS, SECRET) == 1
    assert verp_subscriber(address.upper(), BOUNCE_ADDRESS, SECRET) == 1  # case-folding MTA
    assert verp_subscriber(f"<{address}>", BOUNCE_ADDRESS, SECRET) == 1
    assert verp_address(BOUNCE_ADDRESS, 2, SECRET) != address.replace("s1-", "s2-")


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_verp_round_trip_for_any_id(subscriber_id: int) -> None:
    address = verp_address(BOUNCE_ADDRESS, subscriber_id, SECRET)
    assert verp_subscriber(address, BOUNCE_ADDRESS, SECRET) == subscriber_id


def test_verp_rejections() -> None:
    good = verp_address(BOUNCE_ADDRESS, 42, SECRET)
    local = good.partition("@")[0]
    signature = local.rsplit("-", 1)[1]
    other_signature = verp_address(BOUNCE_ADDRESS, 43, SECRET).partition("@")[0].rsplit("-")[1]
    rejected = [
        good.replace("papers+", "letters+"),  # wrong local part
        good.replace("papers+", "xpapers+"),
        f"{local}@example.org",  # wrong domain
        f"{local}@digest.example.org.evil.example",
        good.replace(signature, other_signature),  # signature of another id
        good.replace(signature, signature[:-1] + ("a" if signature[-1] != "a" else "b")),
        good.replace(signature, signature[:-1]),
        good.replace("+s42-", "+s042-"),  # not the form verp_address writes
        good.replace("+s42-", "+s-"),
        good.replace("+s42-", "+42-"),
        good.replace("+s42-", "+s" + "9" * 5000 + "-"),
        BOUNCE_ADDRESS,  # not a VERP address
        "papers+s42@digest.example.org",
        "not an address",
        "",
        "@",
        local,
    ]
    for address in rejected:
        assert verp_subscriber(address, BOUNCE_ADDRESS, SECRET) is None, address
    assert verp_subscriber(good, BOUNCE_ADDRESS, "another-secret") is None
    assert verp_subscriber(good, "bounces@digest.example.org", SECRET) is None
    assert verp_subscriber(good, "not-an-address", SECRET) is None
    assert verp_subscriber(good, "Papers@DIGEST.example.org", SECRET) == 42


def test_verp_address_needs_a_bounce_address() -> None:
    with pytest.raises(InputError, match="not local@domain"):
        verp_address("papers", 1, SECRET)


def test_bounce_to_a_verp_address_names_the_subscriber() -> None:
    address = verp_address(BOUNCE_ADDRESS, 1, SECRET)
    data = fixture("dsn_hard.eml").replace(
        b"Delivered-To: papers@digest.example.org", f"Delivered-To: {address}".encode()
    )
    [report] = parse_report(data)
    assert report.envelope_to[0] == address
    subscribers = {verp_subscriber(a, BOUNCE_ADDRESS, SECRET) for a in report.envelope_to}
    assert subscribers == {1, None}


def test_a_maildir_is_read_in_arrival_order(tmp_path: Path) -> None:
    path = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True)
    # Microseconds are not zero-padded: by name, M100000 would come before M99999.
    (path / "new" / "1700000000.M99999P7Q1.host").write_bytes(fixture(THREE[0]))
    (path / "new" / "1700000000.M100000P7Q2.host").write_bytes(fixture(THREE[1]))
    (path / "new" / "1699999999.M5P7Q3.host").write_bytes(fixture(THREE[2]))
    names = [Path(item.name).name for item in read_mailbox(path)]
    assert names == [
        "1699999999.M5P7Q3.host",
        "1700000000.M99999P7Q1.host",
        "1700000000.M100000P7Q2.host",
    ]
