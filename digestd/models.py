"""The tables as SQLModel models; queries live in store.py, schema changes in migrations/."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, ForeignKey, Integer, UniqueConstraint
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


class Paper(SQLModel, table=True):
    """A paper, stored once however many dumps carry it."""

    __tablename__ = "paper"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=80)
    title_key: str = Field(index=True, max_length=64)
    arxiv_id: str | None = Field(default=None, max_length=32)
    title: str
    abstract: str
    dump_id: int = Field(foreign_key="dump.id")
    dump_date: date = Field(index=True)
    first_seen: datetime = Field(index=True)


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


class Delivery(SQLModel, table=True):
    """One digest handed to the sender for one subscriber, with the outcome."""

    __tablename__ = "delivery"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    digest_key: str = Field(max_length=32)
    status: str = Field(max_length=16)
    message_id: str
    paper_count: int
    reply: str = ""
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
