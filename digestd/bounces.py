"""Bounces and complaints: what delivery status notifications and ARF reports say.

``parse_report`` turns one message into the reports it carries: a DSN (RFC 3464) gives one
report per failed or delayed recipient, an ARF feedback report (RFC 5965) one complaint, any
other message none (plain-text bounce notices are read by digestd.bounce_notices). A permanent
failure is classified by whose fault it is (digestd.refusals): the recipient's is "hard", ours
(a relay refusing our message for its content, size or policy) "refused". Mailboxes are read
by digestd.mailboxes; VERP addresses, which name the subscriber even when a report does not,
are made and read in digestd.tokens.

Nothing here touches the database: the caller records the reports.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value, getaddresses

from digestd.refusals import RECIPIENT, enhanced_status, refused_step, split_reply, status_fault

_REASON_LIMIT = 500
# An enhanced status code (RFC 3463), not a piece of an IP address or a version number.
_STATUS = re.compile(r"(?<![\d.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])(?!\.[0-9])")
# The type label before a field's value: "smtp; 550 ...", "rfc822;alice@...", "X-Postfix; ...".
_TYPE_LABEL = re.compile(r"\s*[A-Za-z0-9-]{1,32}\s*;\s*")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
_MULTILINE_REPLY = re.compile(r"([245][0-9][0-9])-(?:([245]\.[0-9]{1,3}\.[0-9]{1,3})\s+)?")
_SMTP_REPLY = re.compile(r"\b[45][0-9][0-9][ -]")
_NOT_DELIVERY_FAILURES = frozenset({"delivered", "relayed", "expanded"})
# ARF types that are not a person saying "this is spam": a mailbox provider's "not spam"
# button and DKIM/SPF failure reports (RFC 6591).
_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
# The email package parses every message/* part but delivery-status as one embedded message.
_RETURNED_MESSAGE = frozenset(
    {"message/rfc822", "message/rfc822-headers", "message/global", "message/global-headers"}
)
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "To", "Envelope-To")


@dataclass(frozen=True)
class BounceReport:
    """One recipient's failure or one complaint, as a report states it. ``kind`` is "hard"
    (the recipient's address), "soft" (delayed, or temporary), "refused" (permanent, but not
    the recipient's fault) or "complaint"."""

    key: str
    kind: str
    recipient: str | None
    message_id: str | None
    envelope_to: tuple[str, ...]
    status: str
    reason: str
    # A plain-text notice, read by heuristics rather than a standard format: only our signed
    # VERP address, not the addresses or Message-IDs it quotes, may tie it to a subscriber.
    plain: bool = False


def parse_report(data: bytes) -> list[BounceReport]:
    """The bounces or the complaint that the message ``data`` reports; [] for any other message.

    A DSN gives one report per recipient it says failed ("hard") or is delayed ("soft");
    recipients delivered, relayed or expanded give none. Malformed input gives what can be
    read from it, never an exception.
    """
    try:
        message = message_from_bytes(data)
        if message.get_content_type() != "multipart/report" or not message.is_multipart():
            return []
        parts = [part for part in message.get_payload() if isinstance(part, Message)]
        report_type = message.get_param("report-type")
        report_type = collapse_rfc2231_value(report_type).strip().lower() if report_type else ""
        status_part = _part(parts, "message/delivery-status")
        # Some MTAs leave report-type out; the delivery-status part says enough.
        is_dsn = report_type in ("delivery-status", "") and status_part is not None
        if report_type != "feedback-report" and not is_dsn:
            return []
        key = message_id_in(header_value(message, "Message-ID"))
        origin = _Origin(
            key=key or f"sha256:{hashlib.sha256(data).hexdigest()}",
            envelope_to=envelope_addresses(message),
            parts=parts,
        )
        return _bounces(origin, status_part) if is_dsn and status_part else _complaints(origin)
    except RecursionError:
        # The email package parses nested parts recursively: hostile nesting runs out of stack.
        return []


@dataclass(frozen=True)
class _Origin:
    """What every report taken from one message shares."""

    key: str
    envelope_to: tuple[str, ...]
    parts: list[Message]


def _bounces(origin: _Origin, status_part: Message) -> list[BounceReport]:
    groups = status_part.get_payload()
    if not isinstance(groups, list):
        return []
    fields = [group for group in groups if isinstance(group, Message)]
    per_message = fields[0] if fields else Message()
    returned = _returned_headers(origin.parts)
    # Gmail's X-Original-Message-ID, in case the returned message is missing.
    message_id = message_id_in(header_value(returned, "Message-ID")) or message_id_in(
        header_value(per_message, "X-Original-Message-ID")
    )
    reports = []
    for group in fields:
        # The per-message group comes first, but some MTAs leave it out: a recipient group is
        # one that names a recipient or an action.
        if not any(name in group for name in ("Final-Recipient", "Original-Recipient", "Action")):
            continue
        action = (header_value(group, "Action").lower().split() or [""])[0]
        diagnostic = header_value(group, "Diagnostic-Code")
        code, reply = split_reply(_reply_text(diagnostic))
        status = _status(header_value(group, "Status"))
        # Exim says 5.0.0 whatever the remote server said: its own words are more telling.
        if status[2:] in ("", "0.0"):
            status = enhanced_status(code, reply) or status
        kind = _bounce_kind(action, status)
        if kind is None:
            continue
        # Original-Recipient is the address as we sent it, before any forwarding or alias.
        recipient = _address(header_value(group, "Original-Recipient")) or _address(
            header_value(group, "Final-Recipient")
        )
        notice = _human_reason(origin.parts, recipient)
        if kind == "hard":
            step = refused_step(diagnostic) or refused_step(notice)
            if status_fault(status, code=code, step=step) != RECIPIENT:
                kind = "refused"
        reason = clip_reason(_reply_text(diagnostic)) or notice
        reports.append(
            BounceReport(
                key=origin.key,
                kind=kind,
                recipient=recipient,
                message_id=message_id,
                envelope_to=origin.envelope_to,
                status=status,
                reason=reason,
            )
        )
    return reports


def _bounce_kind(action: str, status: str) -> str | None:
    if action in _NOT_DELIVERY_FAILURES:
        return None
    # A delayed message is still queued, whatever the code says: the MTA has not given up.
    if action == "delayed":
        return "soft"
    if status.startswith("5"):
        return "hard"
    if status.startswith("4"):
        return "soft"
    if action == "failed":
        return "hard"
    return None


def _complaints(origin: _Origin) -> list[BounceReport]:
    feedback = _embedded(_part(origin.parts, "message/feedback-report"))
    feedback_type = header_value(feedback, "Feedback-Type").lower()
    if feedback_type in _NOT_COMPLAINTS:
        return []
    returned = _returned_headers(origin.parts)
    recipient = _address(header_value(feedback, "Original-Rcpt-To"))
    if recipient is None and returned is not None:
        recipient = next(addresses_in(header_values(returned, "To")), None)
    return [
        BounceReport(
            key=origin.key,
            kind="complaint",
            recipient=recipient,
            message_id=message_id_in(header_value(returned, "Message-ID")),
            envelope_to=origin.envelope_to,
            status="",
            reason=clip_reason(feedback_type) or _human_reason(origin.parts, recipient),
        )
    ]


def _part(parts: list[Message], content_type: str) -> Message | None:
    return next((part for part in parts if part.get_content_type() == content_type), None)


def _embedded(part: Message | None) -> Message | None:
    """The message inside a message/* part (for message/feedback-report: its fields)."""
    inner = part.get_payload() if part is not None else None
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        return inner[0]
    return None


def _returned_headers(parts: list[Message]) -> Message | None:
    """The headers of the returned message: a whole message or only its headers."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type in _RETURNED_MESSAGE:
            return _embedded(part)
        if content_type == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            return BytesHeaderParser().parsebytes(raw) if isinstance(raw, bytes) else None
    return None


def header_value(fields: Message | None, name: str) -> str:
    """A header's first value on one line, unfolded; "" when absent."""
    return next(iter(header_values(fields, name)), "")


def header_values(fields: Message | None, name: str) -> list[str]:
    """Every value of a header, as text on one line each."""
    if fields is None:
        return []
    # The stored values, not Message.get's: those turn 8-bit text (UTF-8 from SMTPUTF8 or
    # localized MTAs) into replacement characters; these keep it as surrogate escapes.
    values = [str(value) for key, value in fields.raw_items() if key.lower() == name.lower()]
    return [
        _one_line(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        for value in values
    ]


def _one_line(text: str) -> str:
    """``text`` with control characters (and surrogates from undecodable bytes) removed and
    every run of white space made one space."""
    kept = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char)[0] != "C"
    )
    return " ".join(kept.split())


def clip_reason(text: str) -> str:
    """``text`` on one line without control characters, clipped to the length kept as a
    bounce's reason."""
    return _one_line(text[: _REASON_LIMIT * 4])[:_REASON_LIMIT].rstrip()


def _status(text: str) -> str:
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def _reply_text(diagnostic: str) -> str:
    """A Diagnostic-Code's text without its type label, and a multi-line SMTP reply
    ("550-5.1.1 The email ... 550-5.1.1 double-checking ... 550 5.1.1 spaces") as one sentence."""
    text = _TYPE_LABEL.sub("", diagnostic, count=1)
    first = _MULTILINE_REPLY.match(text)
    if first is None:
        return text
    code, enhanced = first.group(1), first.group(2)
    repeated = rf"\s{code}[ -](?:{re.escape(enhanced)}\s)?" if enhanced else rf"\s{code}[ -]"
    rest = re.sub(repeated, " ", text[first.end() :])
    return f"{code} {enhanced} {rest}" if enhanced else f"{code} {rest}"


def _address(field: str) -> str | None:
    """The lower-cased address in "rfc822; Alice@Example.org", "<a@b>" or "Name <a@b>"."""
    return next(addresses_in([_TYPE_LABEL.sub("", field, count=1)]), None)


def addresses_in(values: Iterable[str]) -> Iterator[str]:
    """The lower-cased addresses in header values ("Name <a@b>, c@d"), in order."""
    for _, found in getaddresses(list(values)):
        address = found.strip()
        local, at, domain = address.rpartition("@")
        if local and at and domain and not any(char.isspace() for char in address):
            yield address.lower()


def envelope_addresses(message: Message) -> tuple[str, ...]:
    """The addresses a message was delivered to, as its delivery headers say (Delivered-To,
    X-Original-To, To, Envelope-To): where a VERP address shows."""
    values = [value for name in _ENVELOPE_HEADERS for value in header_values(message, name)]
    return tuple(dict.fromkeys(addresses_in(values)))


def message_id_in(text: str) -> str | None:
    """The Message-ID (with angle brackets) in a header value, None when there is none."""
    match = _MESSAGE_ID.search(text)
    if match:
        return match.group()
    if "@" in text and " " not in text and len(text) <= 900:
        return f"<{text.strip('<>')}>"
    return None


def _human_reason(parts: list[Message], recipient: str | None) -> str:
    """The paragraph of the human-readable part that names the recipient or quotes an SMTP
    reply, else its first line: for reports that give no Diagnostic-Code."""
    return clip_reason(notice_paragraph(plain_text(parts[0]) if parts else "", recipient))


def plain_text(message: Message) -> str:
    """The decoded text of the first text/plain part of ``message`` (itself, if it is one);
    "" when it has none."""
    text_part = next((p for p in message.walk() if p.get_content_type() == "text/plain"), None)
    raw = text_part.get_payload(decode=True) if text_part is not None else None
    if text_part is None or not isinstance(raw, bytes):
        return ""
    try:
        return raw.decode(text_part.get_content_charset() or "utf-8", errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return raw.decode("utf-8", errors="replace")


def notice_paragraph(text: str, recipient: str | None) -> str:
    """The paragraph of a bounce notice's ``text`` that names ``recipient``, else the first
    that quotes an SMTP reply, else the first line: what the notice says went wrong."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text[:100_000]) if p.strip()]
    for paragraph in paragraphs:
        if recipient and recipient in paragraph.lower():
            return paragraph
    for paragraph in paragraphs:
        if _SMTP_REPLY.search(paragraph):
            return paragraph
    return paragraphs[0].strip().splitlines()[0] if paragraphs else ""
