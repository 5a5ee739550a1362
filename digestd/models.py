"""The tables as SQLModel models; queries live in store.py, schema changes in migrations/."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


class Dump(SQLModel, table=True):
    """One ingested dump file, known by the SHA-256 of its bytes."""

    __tablename__ = "dump"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(unique=True, max_length=64)
    file_name: str
    dump_date: date
    ingested_at: datetime
    paper_count: int
    new_count: int
    source: str = Field(default="", max_length=64)  # the [[sources]] name; "" for a dump file
    format: str = Field(default="text", max_length=16)  # the parser that read it


class Paper(SQLModel, table=True):
    """A paper, stored once however many dumps and sources carry it.

    Its ``uid`` is ``arxiv:<version-less id>``, else ``doi:<doi>``, else ``t:<title key>``;
    a paper first stored by its title takes its arXiv id when a source names it."""

    __tablename__ = "paper"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=80)
    title_key: str = Field(index=True, max_length=64)
    arxiv_id: str | None = Field(default=None, max_length=32)
    version: int | None = None  # the newest arXiv version seen
    doi: str | None = Field(default=None, max_length=255, index=True)
    title: str
    abstract: str
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    categories: list[str] = Field(  # primary first
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    published: date | None = None
    journal_ref: str = ""
    comment: str = ""
    abs_url: str = ""
    pdf_url: str = ""
    hf_url: str = ""
    upvotes: int | None = None
    source: str = Field(default="", max_length=64)  # the source that first stored it
    revised_at: datetime | None = Field(default=None, index=True)  # a newer version stored
    dump_id: int = Field(foreign_key="dump.id")
    dump_date: date = Field(index=True)  # the paper's own date: its dump's date line
    first_seen: datetime = Field(index=True)
    # When the stored paper last changed (first: when it was stored). No two papers share an
    # instant, so feed entries never share an atom:updated.
    updated_at: datetime = Field(unique=True, index=True)


class Subscriber(SQLModel, table=True):
    """A person who receives digests."""

    __tablename__ = "subscriber"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=320)
    name: str = ""
    timezone: str = "UTC"
    frequency: str = "daily"
    send_hour: int = 7
    weekday: str = "mon"
    active: bool = True
    created_at: datetime
    # Set after hard bounces or a complaint: never mailed again until an operator lifts it.
    suppressed_at: datetime | None = None
    suppressed_reason: str = ""
    lifted_at: datetime | None = None  # hard bounces before this no longer count
    # None while a web sign-up waits for its confirmation: such a subscriber gets no digest.
    confirmed_at: datetime | None = None
    confirmation_sent_at: datetime | None = None
    # Also send papers again when a new version of one already sent appears.
    revised_papers: bool = False
    # How the digest is ordered: "relevance", "newest" or "upvotes".
    digest_order: str = Field(default="relevance", max_length=16)
    language: str = Field(default="en", max_length=8)  # of the mails and pages: "en", "de"
    paused_until: date | None = None  # no digest before this local date (a pause of N days)


class SignUpRequest(SQLModel, table=True):
    """One web sign-up waiting for the click in its confirmation mail, with the preferences it
    asked for: confirming applies exactly these. The mailed link names it by ``nonce``; an
    unsubscribe deletes a subscriber's open requests, so no link mailed before it works."""

    __tablename__ = "sign_up_request"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    nonce: str = Field(unique=True, max_length=32)
    queries: str = ""  # one query per line
    topics: str = ""  # topic slugs, comma-separated
    frequency: str = Field(default="daily", max_length=16)
    send_hour: int = 7
    timezone: str = Field(default="UTC", max_length=64)
    weekday: str = Field(default="mon", max_length=8)
    revised_papers: bool = False
    digest_order: str = Field(default="relevance", max_length=16)
    language: str = Field(default="en", max_length=8)
    created_at: datetime


class Profile(SQLModel, table=True):
    """One keyword query of a subscriber."""

    __tablename__ = "profile"
    __table_args__ = (UniqueConstraint("subscriber_id", "query"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    query: str


class Topic(SQLModel, table=True):
    """An admin-defined named query with its own feed."""

    __tablename__ = "topic"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=64)
    title: str
    query: str
    description: str = ""  # a sentence for readers of the sign-up page and the feed
    created_at: datetime


class Follow(SQLModel, table=True):
    """A subscriber follows a topic: its papers go into their digest."""

    __tablename__ = "follow"

    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True)
    )
    topic_id: int = Field(
        sa_column=Column(Integer, ForeignKey("topic.id", ondelete="CASCADE"), primary_key=True)
    )


OPEN_CONDITION = "status IN ('planned', 'sending', 'retry')"  # an open digest: still to send


class Delivery(SQLModel, table=True):
    """The outbox: one digest for one subscriber and digest key, from planned to sent or failed.

    Status moves planned -> sending -> sent, or -> retry -> sending ... -> sent or failed;
    a digest that found nothing new is recorded as empty. The unique (subscriber, digest key)
    pair is what makes a second digest for the same day impossible, and the partial unique
    index on open rows a second digest in flight for one subscriber.
    """

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "digest_key"),
        # At most one open digest per subscriber (migration 0007): two planners at the same
        # moment cannot both put one into the outbox.
        Index(
            "uq_delivery_one_open",
            "subscriber_id",
            unique=True,
            sqlite_where=text(OPEN_CONDITION),
            postgresql_where=text(OPEN_CONDITION),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    digest_key: str = Field(max_length=32)
    status: str = Field(max_length=16, index=True)
    message_id: str = Field(index=True)  # bounce reports are traced back by it
    paper_count: int
    paper_ids: str = ""  # the planned papers' ids, comma-separated, ranked
    reply: str = ""  # the server's last words, or why it failed
    # Whose fault a failed digest is: "recipient" (a hard bounce: the address), "sender" (the
    # receiving system refused our message or server: policy, size, protocol), or "" (other).
    fault: str = Field(default="", max_length=16)
    attempts: int = 0
    interrupted: int = 0  # times found "sending" after a crash, and resent
    created_at: datetime  # when it was planned: its Date header
    next_attempt_at: datetime | None = None
    give_up_at: datetime | None = None
    sent_at: datetime | None = None
    # The process sending it ("host:pid") and until when, in the database's own time
    # (naive UTC): another process takes a "sending" digest over only once the lease ended.
    claimed_by: str = Field(default="", max_length=96)
    lease_until: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))


class Bounce(SQLModel, table=True):
    """A hard or soft bounce or a complaint against a subscriber: from SMTP or a report."""

    __tablename__ = "bounce"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    delivery_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("delivery.id", ondelete="SET NULL"), nullable=True),
    )
    # "hard", "soft", "complaint", or "refused": a permanent refusal that is not the
    # recipient's fault (our message, policy, the system); it never counts against them
    kind: str = Field(max_length=16)
    status: str = Field(default="", max_length=16)  # enhanced status code, e.g. 5.1.1
    reason: str = ""
    source: str = Field(max_length=16)  # "smtp" or "report"
    # The report message's own id, so reading a mailbox twice records nothing twice.
    report_key: str | None = Field(default=None, unique=True)
    created_at: datetime


class SentPaper(SQLModel, table=True):
    """A paper that went out to a subscriber; never sent to them again."""

    __tablename__ = "sent_paper"

    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True)
    )
    paper_id: int = Field(
        sa_column=Column(Integer, ForeignKey("paper.id", ondelete="CASCADE"), primary_key=True)
    )
    delivery_id: int = Field(foreign_key="delivery.id")
    version: int | None = None  # the paper's version when it went out


class PaperVersion(SQLModel, table=True):
    """One arXiv version of a paper, when digestd first saw it and from which source."""

    __tablename__ = "paper_version"
    __table_args__ = (UniqueConstraint("paper_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("paper.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    version: int
    seen_at: datetime
    source: str = Field(default="", max_length=64)


class SourceState(SQLModel, table=True):
    """What digestd knows of one configured source between polls: its validators (ETag,
    Last-Modified) and its health."""

    __tablename__ = "source_state"

    name: str = Field(primary_key=True, max_length=64)
    url: str = ""  # the URL (or path) the validators belong to; a new one forgets them
    etag: str = ""
    last_modified: str = ""
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_paper_count: int | None = None  # papers in the last successful fetch (0: empty day)
    last_new_count: int | None = None
    last_error: str = ""  # why the last attempt failed; "" after a success
    failing_since: datetime | None = None  # first failure since the last success


class HostLease(SQLModel, table=True):
    """Whose turn it is to send a request to one host, shared by every digestd process on the
    database: the politeness gate (one request at a time per host, spaced) as a lease."""

    __tablename__ = "host_lease"

    host: str = Field(primary_key=True, max_length=255)
    holder: str = ""  # who holds the turn ("node pid N token"); "" when free
    busy_until: datetime | None = None  # the turn lapses then (its holder crashed); None: free
    free_at: datetime | None = None  # the next request may start then (the spacing)
