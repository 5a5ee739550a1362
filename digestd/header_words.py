"""Header values from untrusted text: one line, plain where it can be, RFC 2047 encoded words
where it must, folded at spaces into lines of about 78 characters (RFC 5322)."""

from __future__ import annotations

import base64
import email.utils
import re

# CR, LF and every other control character (C0, DEL, C1) plus the Unicode line and paragraph
# separators, which some parsers also treat as line ends. Runs of them become one space. Lone
# surrogates go too: they cannot be written as UTF-8.
_HEADER_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
LONGEST_PLAIN_PHRASE = 400  # characters of a display name or description written bare
_FOLD_AT = 78
_ENCODED_WORD_BYTES = 45  # 60 characters of base64, 72 with =?utf-8?b??=: under 76


def header_text(value: str) -> str:
    """``value`` made safe for a header: control characters and line breaks become spaces."""
    return _HEADER_UNSAFE.sub(" ", value).strip()


def phrase(display_name: str) -> str:
    """A display name as a header phrase: bare, quoted, or RFC 2047 encoded words."""
    text = header_text(display_name)
    if not text.isascii() or "=?" in text or len(text) > LONGEST_PLAIN_PHRASE:
        # Encoded words only use characters that are allowed in a phrase (RFC 2047 section 5).
        # Text that merely looks like an encoded word is encoded too, so it decodes as itself.
        return encoded_words(text)
    if _PLAIN_PHRASE.fullmatch(text):
        return text
    return f'"{email.utils.quote(text)}"'


def subject_header(subject: str) -> str:
    """``Subject: ...``, as encoded words if not ASCII or if it holds what looks like one."""
    if subject.isascii() and "=?" not in subject and all(len(w) < 900 for w in subject.split()):
        return fold(f"Subject: {subject}")
    return fold(f"Subject: {encoded_words(subject)}")


def encoded_words(text: str) -> str:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), each under 76 characters,
    space-separated ; fold does the folding, for the whole line.

    Each word holds whole characters of at most 45 bytes (60 in base64): the standard
    library's Header weighs quoted-printable against base64 for every split, which costs
    milliseconds for a subject, and every digest's subject differs."""
    words = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > _ENCODED_WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    return " ".join(
        f"=?utf-8?b?{base64.b64encode(word.encode('utf-8')).decode('ascii')}?=" for word in words
    )


def fold(line: str) -> str:
    """``line`` folded at spaces into lines of about 78 characters, ending with CRLF.

    Only called on ASCII text whose words are shorter than the 998-character limit.
    """
    if len(line) <= _FOLD_AT:
        return line + "\r\n"
    out: list[str] = []
    # The first line holds the field name and at least the first word of its value: a value
    # starting on a continuation line would keep the folding space when unfolded.
    name, *words = line.split(" ")
    current = f"{name} {words.pop(0)}" if words else name
    for word in words:
        if len(current) + 1 + len(word) > _FOLD_AT:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    out.append(current)
    return "\r\n".join(out) + "\r\n"
