"""Untrusted XML in, an element tree out: entities, DTD tricks and malformed XML are refused.

The arXiv API and RSS parsers read responses from the network (or files someone dropped in the
inbox) through ``parse_xml``; defusedxml refuses entity declarations (the "billion laughs"),
external entities and DTD retrieval before expat expands anything.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException, EntitiesForbidden

from digestd.errors import DumpError
from digestd.ingest.papers import collapse_whitespace

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
DC = "{http://purl.org/dc/elements/1.1/}"


def parse_xml(source: str | bytes) -> Element:
    """The root element of the XML document ``source``; DumpError (one line, with the line and
    column for malformed XML) when it is not well-formed or declares entities."""
    try:
        root: Element = SafeET.fromstring(source, forbid_dtd=False, forbid_entities=True)
    except ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":", 1)[0]
        message = f"XML is not well-formed: {reason} at line {line}, column {column}"
        raise DumpError(message) from None
    except EntitiesForbidden as exc:
        raise DumpError(f"XML refused: it declares the entity {exc.name!r}") from None
    except DefusedXmlException as exc:  # external references, DTD processing
        raise DumpError(f"XML refused: {exc}") from None
    return root


def local_name(element: Element) -> str:
    """The element's tag without its namespace (``{http://www.w3.org/2005/Atom}feed`` -> feed)."""
    return element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""


def element_text(element: Element) -> str:
    """All the text inside ``element``, whitespace collapsed (hard wraps become spaces)."""
    return collapse_whitespace("".join(element.itertext()))


def child_text(parent: Element, tag: str) -> str:
    """The whitespace-collapsed text of the first ``tag`` child of ``parent`` ("" if none)."""
    found = parent.find(tag)
    return element_text(found) if found is not None else ""
