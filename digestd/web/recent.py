"""What the pages show of the recent papers: each topic's newest papers, and how many papers
a visitor's keywords would have matched in the last days."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from digestd import jobs, store
from digestd.db import read_scope
from digestd.formatting import NO_BYLINE, Byline, paper_byline
from digestd.jobs.feeds_job import paper_page
from digestd.models import Paper, Topic
from digestd.web.forms import clean_text, query_lines, query_text_error

RECENT_DAYS = 7
NEWEST_PER_TOPIC = 5
_MATCHING = threading.Lock()
# The recent papers by database, with the (newest id, newest dump date, latest change) they
# were read at.
_RECENT: OrderedDict[str, tuple[tuple[object, ...], list[Paper]]] = OrderedDict()
_RECENT_LOCK = threading.Lock()


class QueryCheck(BaseModel):
    """The answer of /api/query-check: whether the keywords are valid (else ``error`` says
    why), how many papers of the last ``days`` days they match together, and each line."""

    valid: bool
    error: str
    matches: int
    days: int
    lines: list[int]


@dataclass(frozen=True)
class PaperLink:
    """A paper as a title, a link to its own page and its byline (formatting.Byline)."""

    title: str
    url: str
    byline: Byline = NO_BYLINE


@dataclass(frozen=True)
class TopicView:
    """A topic as the front page shows it."""

    slug: str
    title: str
    query: str
    papers: tuple[PaperLink, ...]
    description: str = ""


def recent_papers(session: Session) -> list[Paper]:
    """The papers of the last ``RECENT_DAYS`` days of dumps. They are read again only when
    papers were stored or changed since (the newest id, dump date or ``updated_at`` moved: a
    source may bring a new version, authors or upvotes): a busy page costs one small query,
    not thousands of rows."""
    newest = session.exec(
        select(func.max(Paper.id), func.max(Paper.dump_date), func.max(Paper.updated_at))
    ).one()
    key = str(session.get_bind().engine.url)
    with _RECENT_LOCK:
        cached = _RECENT.get(key)
        if cached is not None and cached[0] == tuple(newest):
            return cached[1]
    papers = store.papers_of_last_days(session, RECENT_DAYS)
    with _RECENT_LOCK:
        _RECENT[key] = (tuple(newest), papers)
        _RECENT.move_to_end(key)
        while len(_RECENT) > 4:
            _RECENT.popitem(last=False)
    return papers


def topic_views(session: Session, topics: Sequence[Topic]) -> list[TopicView]:
    """Each topic with its newest papers of the last days, newest first."""
    papers = recent_papers(session)
    with _MATCHING:
        result = jobs.match_queries({t.slug: t.query for t in topics}, papers)
        matched = {t.slug: result.papers(t.slug) for t in topics}
    by_id = {paper.id: paper for paper in papers}
    views = []
    for topic in topics:
        newest = [by_id[paper_id] for paper_id in reversed(matched[topic.slug])]
        links = tuple(paper_link(p) for p in newest[:NEWEST_PER_TOPIC])
        views.append(TopicView(topic.slug, topic.title, topic.query, links, topic.description))
    return views


def paper_link(paper: Paper) -> PaperLink:
    """A stored paper as the pages list it: its title, its own page and its byline."""
    return PaperLink(paper.title, paper_page(paper), paper_byline(paper))


def check_queries_text(engine: Engine, text: str) -> QueryCheck:
    """How many papers of the last days the keywords (one query per line) match."""
    text = clean_text(text)
    error = query_text_error(text)
    if error:
        return QueryCheck(valid=False, error=error, matches=0, days=RECENT_DAYS, lines=[])
    lines = query_lines(text)
    if not lines:
        return QueryCheck(valid=True, error="", matches=0, days=RECENT_DAYS, lines=[])
    with read_scope(engine) as session:
        papers = recent_papers(session)
    with _MATCHING:
        result = jobs.match_queries(dict(enumerate(lines)), papers)
        per_line = [result.count(number) for number in range(len(lines))]
        matched = {paper_id for number in range(len(lines)) for paper_id in result.papers(number)}
    return QueryCheck(valid=True, error="", matches=len(matched), days=RECENT_DAYS, lines=per_line)


def describe_check(check: QueryCheck) -> str:
    """The check in words, as the keywords field shows it (site.js writes the same)."""
    if not check.valid:
        return check.error
    papers = "paper" if check.matches == 1 else "papers"
    return f"This would have matched {check.matches} {papers} in the last {check.days} days."
