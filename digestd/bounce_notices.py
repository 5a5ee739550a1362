"""Plain-text bounce notices: the ones that are not a multipart/report DSN (qmail's "failure
notice", Exim without DSNs, older and home-grown mail systems).

``parse_plain_bounce`` reads such a message into one report marked ``plain``: its words are
read by heuristics, so only our signed VERP address in its delivery headers may tie it to a
subscriber (digestd.jobs.bounce_job checks that), never an address or Message-ID it quotes.

A message is a bounce notice when it shows a bounce's sign and no auto-reply's sign. Vacation
and out-of-office replies go to the envelope sender too (RFC 3834), so telling them apart is
what keeps a holiday from suppressing a subscriber.

- Bounce signs (any one): From a mail system's mailbox (MAILER-DAEMON, postmaster, "Mail
  Delivery System"/"Subsystem"); an X-Failed-Recipients header (Exim); a failure subject
  ("failure notice", "Undelivered Mail", "Mail delivery failed", "Undeliverable", "Returned
  mail", "Delivery Status Notification", "could not be delivered", ...).
- Auto-reply signs (any one, and the message is not a bounce): X-Autoreply, X-Autorespond or
  X-Autoresponder; Precedence: auto_reply; an out-of-office or automatic-reply subject;
  Auto-Submitted: auto-replied from anyone but a mail system's mailbox.
- Not signs either way: an empty Return-Path (RFC 3834 asks auto-responders to send with one
  too); Auto-Submitted: auto-generated (every automatic mail says so: a list's moderation
  notice, a challenge-response filter); Auto-Submitted: auto-replied from a mail system
  (Exim and Postfix put it on their bounces).

What the notice reports: a delay ("delayed", "not yet been delivered", "will keep trying") or a
4xx reply is "soft"; a 5xx reply (or qmail's own "(#5.1.1)") is classified by
digestd.refusals ("hard" for the recipient's address, "refused" for ours); a permanent failure
with no code at all is "hard". The reason kept is the paragraph that names the failed address
or quotes the reply.
"""

from __future__ import annotations

import hashlib
import re
from email import message_from_bytes
from email.message import Message

from digestd.bounces import (
    BounceReport,
    addresses_in,
    clip_reason,
    envelope_addresses,
    header_value,
    header_values,
    message_id_in,
    notice_paragraph,
    plain_text,
)
from digestd.refusals import (
    RECIPIENT,
    enhanced_status,
    refused_step,
    split_reply,
    status_fault,
)

_PARAGRAPH_LIMIT = 2000
_MAIL_SYSTEM_MAILBOX = re.compile(r"(?:mailer[-_]?daemon|mail[-_]?daemon|postmaster)", re.I)
_MAIL_SYSTEM_NAME = re.compile(r"\bmail delivery (?:system|subsystem)\b", re.I)
_FAILURE_SUBJECT = re.compile(
    r"failure notice|undeliver|returned mail|returned to sender|could not be delivered"
    r"|non-?delivery|delivery status notification|mail delivery failed"
    r"|delivery (?:failure|failed|has failed|problem)",
    re.I,
)
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autoresponder"
    r"|^\s*auto:|vacation|on holiday|away from (?:the|my) (?:office|desk)"
    r"|automatische antwort|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica",
    re.I,
)
_AUTO_REPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
# Where the copy of our returned message starts: qmail "--- Below this line is a copy of the
# message.", Exim "------ This is a copy of the message, including all the headers. ------",
# sendmail "----- Original message follows -----".
_RETURNED_COPY = re.compile(
    r"^[ \t]*-{2,}.*?(?:copy of the|below this line|original message|message follows"
    r"|returned message|headers of)",
    re.I | re.M,
)
# A reply as notices quote it: at the start of a line, or after "said:" (qmail "Remote host
# said: 550 ...") or "<<<" (sendmail's transcript).
_QUOTED_REPLY = re.compile(r"(?:^|said:|<<<)[ \t]*([45][0-9][0-9][ -].*)", re.I | re.M)
_QMAIL_STATUS = re.compile(r"\(#([245]\.[0-9]{1,3}\.[0-9]{1,3})\)")
_QMAIL_RECIPIENT = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:[ \t]*$", re.M)
_ADDRESS = re.compile(r"[^\s<>:;,()\[\]\"']+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_RETURNED_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(<[^<>\s]{1,900}>)", re.I | re.M)
_DELAYED = re.compile(
    r"\bdelayed\b|not yet been delivered|will (?:keep|continue) (?:on )?trying"
    r"|will be retried|still (?:be )?trying|delivery attempts will continue",
    re.I,
)
_PERMANENT = re.compile(r"permanent (?:error|failure)|given up|giving up|gave up", re.I)


def parse_plain_bounce(data: bytes) -> list[BounceReport]:
    """The one bounce a plain-text notice reports, marked ``plain``; [] for a DSN or ARF
    report (see digestd.bounces.parse_report), an auto-reply or any other message."""
    try:
        message = message_from_bytes(data)
        if message.get_content_type() == "multipart/report" or not is_bounce_notice(message):
            return []
        whole = plain_text(message)[:200_000]
        copy = _RETURNED_COPY.search(whole)
        notice = whole[: copy.start()] if copy else whole
        failed = next(addresses_in(header_values(message, "X-Failed-Recipients")), None)
        if failed is None and (named := _QMAIL_RECIPIENT.search(notice)):
            failed = named.group(1).lower()
        # What matters is at its start (the reason kept is 500 characters); a bound keeps the
        # searches below fast on hostile input.
        paragraph = notice_paragraph(notice, failed)[:_PARAGRAPH_LIMIT]
        if failed is None and (named := _ADDRESS.search(paragraph)):
            failed = named.group().lower()
        subject = header_value(message, "Subject")
        kind, status = _classify(subject, notice, paragraph)
        key = message_id_in(header_value(message, "Message-ID"))
        return [
            BounceReport(
                key=key or f"sha256:{hashlib.sha256(data).hexdigest()}",
                kind=kind,
                recipient=failed,
                message_id=_returned_message_id(message, whole[copy.start() :] if copy else "")
                or message_id_in(header_value(message, "In-Reply-To"))
                or message_id_in(header_value(message, "References")),
                envelope_to=envelope_addresses(message),
                status=status,
                reason=clip_reason(paragraph) or clip_reason(subject),
                plain=True,
            )
        ]
    except RecursionError:
        return []


def is_bounce_notice(message: Message) -> bool:
    """Whether ``message`` shows a bounce notice's signs and no auto-reply's (see the module's
    docstring for which)."""
    from_mail_system = any(
        _MAIL_SYSTEM_MAILBOX.fullmatch(address.rpartition("@")[0])
        for address in addresses_in(header_values(message, "From"))
    ) or bool(_MAIL_SYSTEM_NAME.search(header_value(message, "From")))
    subject = header_value(message, "Subject")
    auto_submitted = header_value(message, "Auto-Submitted").lower()
    auto_reply = (
        any(header_values(message, name) for name in _AUTO_REPLY_HEADERS)
        or header_value(message, "Precedence").lower() == "auto_reply"
        or bool(_AUTO_REPLY_SUBJECT.search(subject))
        or (auto_submitted.startswith("auto-replied") and not from_mail_system)
    )
    bounce = (
        from_mail_system
        or bool(header_values(message, "X-Failed-Recipients"))
        or bool(_FAILURE_SUBJECT.search(subject))
    )
    return bounce and not auto_reply


def _classify(subject: str, notice: str, paragraph: str) -> tuple[str, str]:
    """The kind of bounce ("hard", "soft", "refused") and the enhanced status code the
    notice's relevant ``paragraph`` gives."""
    code: int | None = None
    status = ""
    quoted = _QUOTED_REPLY.search(paragraph)
    if quoted is not None:
        code, text = split_reply(" ".join(quoted.group(1).split()))
        status = enhanced_status(code, text)
    elif qmail := _QMAIL_STATUS.search(paragraph):
        status = qmail.group(1)
    delayed = _DELAYED.search(f"{subject}\n{notice}") and not _PERMANENT.search(notice)
    if delayed or (code is not None and code < 500) or status.startswith("4"):
        return "soft", status
    step = refused_step(paragraph) or refused_step(notice)
    fault = status_fault(status, code=code, step=step)
    return ("hard" if fault == RECIPIENT else "refused"), status


def _returned_message_id(message: Message, returned_copy: str) -> str | None:
    """The Message-ID of our returned message: in an attached message/rfc822 part, or in the
    copy quoted below the notice."""
    for part in message.walk():
        inner = part.get_payload() if part.get_content_type() == "message/rfc822" else None
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            found = message_id_in(header_value(inner[0], "Message-ID"))
            if found:
                return found
    quoted = _RETURNED_MESSAGE_ID.search(returned_copy)
    return quoted.group(1) if quoted else None
