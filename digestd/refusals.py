"""Whose fault a permanent refusal is: the recipient's address, or our message or server.

A 5xx reply at SMTP time, or a delivery status notification that says a message failed for
good, is classified by its enhanced status code (RFC 3463 and the IANA registry of enhanced
status codes) when it carries an informative one, else by its basic reply code and the SMTP
step that was refused:

=====================================  =============================================  =========
enhanced code                          meaning                                        whose
=====================================  =============================================  =========
5.1.x (but 5.1.7, 5.1.8)               bad destination address, domain, syntax;       recipient
                                       mailbox moved; null MX (5.1.10)
5.1.7, 5.1.8                           bad *sender's* address or domain               sender
5.2.0, 5.2.1, 5.2.2, 5.2.4             mailbox status: disabled, full, list problem   recipient
5.2.3                                  message length over an administrative limit   sender
5.4.1                                  Exchange Online: "recipient address rejected:  recipient
                                       access denied" (no such mailbox)
5.4.4                                  unable to route: no such domain                recipient
5.7.17, 5.7.18                         mailbox or domain owner has changed (RFC 7293) recipient
5.3.x, 5.5.x, 5.6.x, other 5.4.x,      mail system, protocol, content, policy,        sender
other 5.7.x (5.7.13 too)               authentication, spam refusals
=====================================  =============================================  =========

5.7.13 ("user account disabled") is the account of the SMTP AUTH login (RFC 4954): ours. A
5.0.0 ("other undefined status", all that some MTAs ever send) says nothing: the reply is then
classified as if it had no enhanced code. Without one, 550, 551 and 553 at RCPT TO are the
recipient's; every refusal at MAIL FROM is the sender's (no recipient was named yet); 552, 554
and any other code at DATA is not the recipient's.

Pure functions: no I/O.
"""

from __future__ import annotations

import re

RECIPIENT = "recipient"
SENDER = "sender"
FAULTS = (RECIPIENT, SENDER)
STEPS = ("MAIL FROM", "RCPT TO", "DATA")

# Replies that name a bad recipient when nothing more specific is said (RFC 5321 4.2.3).
_RECIPIENT_REPLIES = frozenset({550, 551, 553})
_SENDER_ADDRESS_DETAILS = frozenset({7, 8})  # X.1.7, X.1.8: the sender's address or domain
_RECIPIENT_STATUSES = frozenset(
    {(2, 0), (2, 1), (2, 2), (2, 4), (4, 1), (4, 4), (7, 17), (7, 18)}
)  # (subject, detail) of class 5 codes that are the recipient's beyond the X.1.* ones

_BASIC_CODE = re.compile(r"\s*([2-5][0-9][0-9])(?=[ -]|$)[ -]?")
_ENHANCED_AT_START = re.compile(r"\s*([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9]|\.[0-9])")
_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})")
# How MTAs name the refused step in a notice: Postfix "(in reply to RCPT TO command)", Exim
# "SMTP error from remote mail server after RCPT TO:<...>", qmail "does not like recipient".
_STEP_WORDS = (
    ("MAIL FROM", r"(?:in reply to|after)(?: pipelined)? MAIL FROM\b|sender was rejected"),
    ("RCPT TO", r"(?:in reply to|after)(?: pipelined)? RCPT TO\b|does not like recipient"),
    (
        "DATA",
        r"(?:in reply to|after)(?: the)?(?: end of)? DATA\b|after I sent the message",
    ),
)
_STEPS = [(step, re.compile(words, re.IGNORECASE)) for step, words in _STEP_WORDS]


def split_reply(reply: str) -> tuple[int | None, str]:
    """The basic reply code a reply starts with ("550 5.1.1 no such user") and the text after
    it; (None, the whole text) when it does not start with one."""
    match = _BASIC_CODE.match(reply)
    if match is None:
        return None, reply
    return int(match.group(1)), reply[match.end() :]


def enhanced_status(code: int | None, text: str) -> str:
    """The enhanced status code ("5.1.1") at the start of a reply's ``text`` (what follows the
    basic ``code``), when its class agrees with the code's first digit; else "".

    A code anywhere else in the text is not the reply's own: it may quote another server, or
    be part of an address or a version number."""
    match = _ENHANCED_AT_START.match(text)
    if match is None or (code is not None and str(code)[0] != match.group(1)):
        return ""
    return ".".join(match.groups())


def refusal_fault(code: int | None, text: str, step: str = "") -> str:
    """Whose fault a permanent refusal is, "recipient" or "sender", from its basic reply
    ``code``, the reply ``text`` after it and the SMTP ``step`` refused ("MAIL FROM",
    "RCPT TO", "DATA", or "" when unknown). See the module's table."""
    return status_fault(enhanced_status(code, text), code=code, step=step)


def status_fault(status: str, *, code: int | None = None, step: str = "") -> str:
    """Whose fault a permanent failure with the enhanced ``status`` ("5.7.1"; "" for none) is,
    "recipient" or "sender"; the basic reply ``code`` and the refused ``step`` decide when the
    status says nothing. A failure with neither (a notice that only says it failed) is taken
    as the recipient's, as a failed delivery always was."""
    if step not in (*STEPS, ""):
        raise ValueError(f"unknown SMTP step {step!r}")
    if step == "MAIL FROM":
        return SENDER  # no recipient was named yet
    parts = _STATUS.fullmatch(status.strip())
    if parts is not None and parts.group(1) == "5" and parts.group(2) != "0":
        subject, detail = int(parts.group(2)), int(parts.group(3))
        if subject == 1:
            return SENDER if detail in _SENDER_ADDRESS_DETAILS else RECIPIENT
        return RECIPIENT if (subject, detail) in _RECIPIENT_STATUSES else SENDER
    if code is None:
        return RECIPIENT if step in ("", "RCPT TO") else SENDER
    return RECIPIENT if code in _RECIPIENT_REPLIES and step in ("", "RCPT TO") else SENDER


def refused_step(text: str) -> str:
    """The SMTP step a bounce notice says the remote server refused ("MAIL FROM", "RCPT TO",
    "DATA"), the first one it names; "" when it names none."""
    found = [(match.start(), step) for step, words in _STEPS if (match := words.search(text))]
    return min(found)[1] if found else ""
