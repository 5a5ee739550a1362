"""Whose fault a permanent refusal is: the whole table of digestd.refusals, reply by reply."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digestd.refusals import (
    RECIPIENT,
    SENDER,
    STEPS,
    enhanced_status,
    refusal_fault,
    refused_step,
    split_reply,
    status_fault,
)

RCPT, DATA, MAIL = "RCPT TO", "DATA", "MAIL FROM"

# (reply as the server sent it, the step it answered, whose fault)
TABLE = [
    # 5.1.x: the destination address.
    ("550 5.1.1 <zoe@example.org>: Recipient address rejected: User unknown", RCPT, RECIPIENT),
    ("550 5.1.0 Address rejected", RCPT, RECIPIENT),
    ("550 5.1.2 Bad destination system address", RCPT, RECIPIENT),
    ("553 5.1.3 Bad destination mailbox address syntax", RCPT, RECIPIENT),
    ("550 5.1.6 Mailbox has moved, no forwarding address", RCPT, RECIPIENT),
    ("556 5.1.10 Recipient address has null MX", RCPT, RECIPIENT),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", RCPT, RECIPIENT),
    ("550 5.1.1 <zoe@example.org>: unknown user", DATA, RECIPIENT),  # LMTP-style, after DATA
    # ... but 5.1.7 and 5.1.8 are the sender's address.
    ("553 5.1.7 The sender address <x@y> is not a valid RFC-5321 address", RCPT, SENDER),
    ("550 5.1.8 Bad sender's system address", RCPT, SENDER),
    # 5.2.x: the mailbox, except 5.2.3 (the message's length).
    ("550 5.2.0 Mailbox unavailable", RCPT, RECIPIENT),
    ("550 5.2.1 The email account that you tried to reach is disabled", RCPT, RECIPIENT),
    ("552 5.2.2 The email account that you tried to reach is over quota", DATA, RECIPIENT),
    ("550 5.2.4 Mailing list expansion problem", RCPT, RECIPIENT),
    ("552 5.2.3 Message length exceeds administrative limit", DATA, SENDER),
    # 5.3.x: the receiving system.
    ("552 5.3.4 Message size exceeds fixed maximum message size", DATA, SENDER),
    ("554 5.3.0 Other mail system problem", DATA, SENDER),
    ("452 5.3.1 Mail system full", RCPT, SENDER),  # class disagrees: no enhanced code; 452
    # 5.4.x: routing; 5.4.1 and 5.4.4 name a recipient that cannot be reached.
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", RCPT, RECIPIENT),
    ("550 5.4.4 Unable to route: no such domain", RCPT, RECIPIENT),
    ("554 5.4.6 Routing loop detected", DATA, SENDER),
    ("554 5.4.7 Delivery time expired", RCPT, SENDER),
    # 5.5.x: protocol; 5.6.x: content.
    ("500 5.5.1 Command unrecognized", RCPT, SENDER),
    ("554 5.5.0 Protocol error", DATA, SENDER),
    ("554 5.6.0 Content rejected", DATA, SENDER),
    ("550 5.6.7 Non-ASCII addresses not permitted for that sender/recipient", RCPT, SENDER),
    # 5.7.x: policy, authentication, spam; 5.7.17 and 5.7.18 are the recipient's (RFC 7293).
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen", RCPT, SENDER),
    ("554 5.7.1 <zoe@example.org>: Relay access denied", RCPT, SENDER),
    ("554 5.7.1 Message rejected as spam", DATA, SENDER),
    ("530 5.7.0 Authentication required", RCPT, SENDER),
    ("535 5.7.8 Authentication credentials invalid", RCPT, SENDER),
    ("525 5.7.13 User account disabled", RCPT, SENDER),  # our AUTH account (RFC 4954)
    ("550 5.7.26 This mail is unauthenticated and has been blocked", DATA, SENDER),
    ("550 5.7.27 Sender address has null MX", RCPT, SENDER),
    ("550 5.7.17 Mailbox owner has changed", RCPT, RECIPIENT),
    ("550 5.7.18 Domain owner has changed", RCPT, RECIPIENT),
    # No enhanced code: the basic code and the step decide.
    ("550 Requested action not taken: mailbox unavailable", RCPT, RECIPIENT),
    ("551 User not local; please try <zoe@example.net>", RCPT, RECIPIENT),
    ("553 Requested action not taken: mailbox name not allowed", RCPT, RECIPIENT),
    ("554 Transaction failed", RCPT, SENDER),
    ("552 Requested mail action aborted: exceeded storage allocation", DATA, SENDER),
    ("554 Transaction failed", DATA, SENDER),
    ("550 Message rejected", DATA, SENDER),
    # 5.0.0 says nothing: as if there were no enhanced code.
    ("550 5.0.0 User unknown", RCPT, RECIPIENT),
    ("554 5.0.0 Transaction failed", RCPT, SENDER),
    # A code later in the text is not the reply's own.
    ("550 Requested action not taken 5.7.1 policy", RCPT, RECIPIENT),
    ("554 rejected: see https://example.org/5.1.1.html", DATA, SENDER),
    # Whatever the code, a refused MAIL FROM is ours: no recipient was named yet.
    ("553 5.7.1 <papers@digest.example.org>: sender address rejected", MAIL, SENDER),
    ("550 5.1.1 <papers@digest.example.org>: unknown user", MAIL, SENDER),
    ("550 mailbox unavailable", MAIL, SENDER),
]


@pytest.mark.parametrize(("reply", "step", "fault"), TABLE)
def test_whose_fault_a_refusal_is(reply: str, step: str, fault: str) -> None:
    code, text = split_reply(reply)
    assert code is not None
    assert refusal_fault(code, text, step) == fault


@pytest.mark.parametrize(
    ("reply", "code", "status"),
    [
        ("550 5.1.1 <zoe@example.org>: no", 550, "5.1.1"),
        ("550-5.1.1 first line of a multi-line reply", 550, "5.1.1"),
        ("550 5.1.10 null MX", 550, "5.1.10"),
        ("550 4.2.2 class disagrees with the basic code", 550, ""),
        ("452 4.2.2 Mailbox full", 452, "4.2.2"),
        ("550 user 5.1.1 later in the text", 550, ""),
        ("550 5.1.1.4 not a code", 550, ""),
        ("550 5.1.1foo glued", 550, "5.1.1"),
        ("550", 550, ""),
        ("no code here 5.1.1", None, ""),
        ("5.1.1 a code without a basic code", None, "5.1.1"),
    ],
)
def test_the_enhanced_code_is_the_one_at_the_start(reply: str, code: int, status: str) -> None:
    got_code, text = split_reply(reply)
    assert got_code == code
    assert enhanced_status(got_code, text) == status


def test_a_report_without_any_code_is_the_recipients() -> None:
    # A notice that says only "failed": what a failed delivery always was.
    assert status_fault("") == RECIPIENT
    assert status_fault("", step=RCPT) == RECIPIENT
    assert status_fault("", step=DATA) == SENDER
    assert status_fault("5.7.1") == SENDER
    assert status_fault("5.1.1", code=554, step=DATA) == RECIPIENT
    with pytest.raises(ValueError, match="unknown SMTP step"):
        status_fault("5.1.1", step="EHLO")


@given(
    code=st.integers(500, 599),
    subject=st.integers(0, 9),
    detail=st.integers(0, 30),
    step=st.sampled_from([*STEPS, ""]),
    noise=st.text(alphabet="abc .:;<>@", max_size=20),
)
def test_only_the_leading_code_counts(
    code: int, subject: int, detail: int, step: str, noise: str
) -> None:
    text = f"rejected {noise}"
    buried = f"{text} 5.{subject}.{detail} {noise}"
    assert refusal_fault(code, buried, step) == refusal_fault(code, text, step)
    if step == MAIL:
        assert refusal_fault(code, f"5.{subject}.{detail} {text}", step) == SENDER


@pytest.mark.parametrize(
    ("notice", "step"),
    [
        ("said: 550 5.1.1 unknown (in reply to RCPT TO command)", RCPT),
        ("said: 554 5.7.1 spam (in reply to end of DATA command)", DATA),
        ("said: 553 sender rejected (in reply to MAIL FROM command)", MAIL),
        ("SMTP error from remote mail server after RCPT TO:<zoe@example.org>:", RCPT),
        ("SMTP error from remote mail server after pipelined MAIL FROM:<x@y> SIZE=1:", MAIL),
        ("SMTP error from remote mail server after end of data:", DATA),
        ("192.0.2.25 does not like recipient.", RCPT),
        ("192.0.2.25 failed after I sent the message.", DATA),
        ("Connected to 192.0.2.25 but sender was rejected.", MAIL),
        ("Sorry, no mailbox here by that name. (#5.1.1)", ""),
        ("after RCPT TO: ... then later (in reply to end of DATA command)", RCPT),
    ],
)
def test_the_refused_step_a_notice_names(notice: str, step: str) -> None:
    assert refused_step(notice) == step


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_table() -> list[tuple[str, str]]:
    """(first cell, whose fault) of each row of README's table of enhanced codes."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| enhanced code | what it says | whose fault | what digestd does |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[0], RECIPIENT if cells[2] == "the recipient's" else SENDER))
    return rows


def test_the_readme_table_is_what_the_code_does() -> None:
    rows = readme_table()
    listed = {code for cell, _ in rows for code in re.findall(r"5\.\d+\.\d+", cell)}
    checked = 0
    for cell, fault in rows:
        if cell.startswith("none"):
            continue
        named = cell.split(" but ")[0]
        for code in re.findall(r"5\.\d+\.\d+", named):
            assert status_fault(code, step=RCPT) == fault, (cell, code)
            checked += 1
        for subject in re.findall(r"5\.(\d+)\.x", named):
            for detail in range(0, 31):
                code = f"5.{subject}.{detail}"
                if code not in listed and (subject, detail) != ("0", 0):
                    assert status_fault(code, step=RCPT) == fault, (cell, code)
                    checked += 1
    assert checked > 100
    # The rows without an enhanced code, reply by reply.
    assert [fault for cell, fault in rows if cell.startswith("none")] == [RECIPIENT, SENDER]
    for code in (550, 551, 553):
        assert refusal_fault(code, "no", RCPT) == RECIPIENT
        assert refusal_fault(code, "5.0.0 no", RCPT) == RECIPIENT
    for code, step in ((550, MAIL), (552, DATA), (554, DATA), (550, DATA), (554, RCPT)):
        assert refusal_fault(code, "no", step) == SENDER
