"""Every database query, as a plain function taking a Session.

papers.py holds dumps and papers, people.py subscribers and topics (validating operator input),
deliveries.py what was sent to whom. Callers use ``store.<function>``.
"""

from __future__ import annotations

from digestd.store.deliveries import (
    deliveries_of,
    last_completed_at,
    last_digest_keys,
    last_failed_at,
    record_delivery,
    sent_paper_ids,
)
from digestd.store.papers import (
    all_papers,
    dump_by_sha256,
    paper_count,
    papers_of_last_days,
    papers_since,
    store_dump,
)
from digestd.store.people import (
    FREQUENCIES,
    SLUG,
    add_subscriber,
    add_topic,
    check_queries,
    check_timezone,
    follower_counts,
    normalize_email,
    queries_by_subscriber,
    remove_subscriber,
    remove_topic,
    set_active,
    subscriber_by_email,
    subscribers,
    topic_by_slug,
    topics,
    topics_by_subscriber,
    update_subscriber,
)

__all__ = [
    "FREQUENCIES",
    "SLUG",
    "add_subscriber",
    "add_topic",
    "all_papers",
    "check_queries",
    "check_timezone",
    "deliveries_of",
    "dump_by_sha256",
    "follower_counts",
    "last_completed_at",
    "last_digest_keys",
    "last_failed_at",
    "normalize_email",
    "paper_count",
    "papers_of_last_days",
    "papers_since",
    "queries_by_subscriber",
    "record_delivery",
    "remove_subscriber",
    "remove_topic",
    "sent_paper_ids",
    "set_active",
    "store_dump",
    "subscriber_by_email",
    "subscribers",
    "topic_by_slug",
    "topics",
    "topics_by_subscriber",
    "update_subscriber",
]
