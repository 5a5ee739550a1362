"""Which format a dump's bytes are in, and the parser for each: bytes in, ParsedDump out.

Detection looks only at the start of the content, never at a file name (a fetched response has
none): an XML root ``<feed>`` is the arXiv API, ``<rss>`` arXiv RSS; a JSON array is Hugging
Face's daily papers; JSON objects one a line are JSON Lines (a single object too, when it looks
like a paper: it has a "title"); any other JSON object is read as a Hugging Face answer (its error
object); anything else is the daily text dump.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date

from digestd.errors import DumpError
from digestd.ingest.arxiv_api import parse_arxiv_api
from digestd.ingest.arxiv_rss import parse_arxiv_rss
from digestd.ingest.daily_text import parse_daily_text
from digestd.ingest.hf_daily import parse_hf_daily
from digestd.ingest.jsonl import parse_jsonl
from digestd.ingest.papers import ParsedDump

FORMATS = ("text", "arxiv-api", "arxiv-rss", "hf-json", "jsonl")
PARSERS: dict[str, Callable[..., ParsedDump]] = {
    "text": parse_daily_text,
    "arxiv-api": parse_arxiv_api,
    "arxiv-rss": parse_arxiv_rss,
    "hf-json": parse_hf_daily,
    "jsonl": parse_jsonl,
}
SNIFF_BYTES = 4096
# What may come before the root element: the XML declaration, comments, processing instructions,
# a DOCTYPE (its internal subset, where entities are declared, is for the parser to refuse).
_XML_PROLOG = re.compile(
    rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\]\s*)?>)", re.DOTALL
)
_ROOT = re.compile(rb"\s*<(?:[A-Za-z_][\w.-]*:)?(?P<name>[A-Za-z_][\w.-]*)")
_XML_ROOTS = {b"feed": "arxiv-api", b"rss": "arxiv-rss"}


def decode_dump(data: bytes) -> str:
    """The text of a dump's bytes, refusing empty, binary and non-UTF-8 content."""
    if not data.strip():
        raise DumpError("file is empty")
    if b"\x00" in data[:8192]:
        raise DumpError("file is binary (contains NUL bytes), not a text dump")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DumpError(f"not UTF-8 text: undecodable byte at offset {exc.start}") from None


def detect_format(data: bytes) -> str:
    """The name (one of FORMATS) of the format ``data`` looks like from its first bytes;
    "text" when it looks like nothing else."""
    head = data[:SNIFF_BYTES].removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<"):
        position = 0
        while prolog := _XML_PROLOG.match(head, position):
            position = prolog.end()
        root = _ROOT.match(head, position)
        return _XML_ROOTS.get(root["name"], "text") if root else "text"
    if head.startswith(b"["):
        return "hf-json"
    if head.startswith(b"{"):
        return _object_format(data)
    return "text"


def _object_format(data: bytes) -> str:
    """JSON Lines or one (Hugging Face error) object, for content starting with "{"."""
    first, _, rest = data.removeprefix(b"\xef\xbb\xbf").lstrip().partition(b"\n")
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):  # a pretty-printed object spans lines
        return "hf-json"
    if rest.strip():
        return "jsonl"
    return "jsonl" if isinstance(value, dict) and "title" in value else "hf-json"


def parse_as(data: bytes, *, format: str, reference: date) -> ParsedDump:
    """The papers in ``data`` read as ``format`` (one of FORMATS). DumpError when the format is
    unknown or the bytes cannot be read as it; SourceFailure when they are a service's error."""
    parser = PARSERS.get(format)
    if parser is None:
        raise DumpError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    return parser(decode_dump(data), reference=reference)
