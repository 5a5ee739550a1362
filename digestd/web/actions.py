"""What the forms change in the database, through digestd.store.signup: a sign-up, its
confirmation, and a subscriber's new preferences. Each says what is wrong per field instead of
raising."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from digestd import store
from digestd.db import session_scope
from digestd.errors import DigestError, NotFoundError, QueryError
from digestd.models import Subscriber
from digestd.store import signup
from digestd.store.signup import Preferences
from digestd.web.forms import PreferencesForm, check_form, subscriber_form
from digestd.web.security import link_target


@dataclass(frozen=True)
class SignUpMail:
    """A mail a sign-up calls for: its kind ("confirm" or "already"), its recipient, and for
    "confirm" the nonce of the sign-up request its link confirms."""

    kind: str
    subscriber_id: int
    email: str
    nonce: str | None = None
    language: str = "en"  # "confirm": the sign-up's; "already": the subscriber's


def record_sign_up(
    engine: Engine,
    form: PreferencesForm,
    *,
    now: datetime,
    resend_after: timedelta,
    language: str = "en",
) -> tuple[dict[str, str], SignUpMail | None]:
    """Check the sign-up form and record it: what is wrong with each field, in ``language``
    (nothing when it was recorded), and the mail to send, if any."""
    try:
        with session_scope(engine) as session:
            slugs = {topic.slug for topic in store.topics(session)}
            check = check_form(form, topic_slugs=slugs, with_email=True, language=language)
            if check.preferences is None:
                return check.errors, None
            try:
                result = signup.sign_up(
                    session, check.email, check.preferences, now=now, resend_after=resend_after
                )
            except DigestError as exc:
                session.rollback()
                return field_error(exc), None
            subscriber = result.subscriber
            if result.mail is None or subscriber is None:
                return {}, None
            session.flush()
            assert subscriber.id is not None
            speaks = check.preferences.language if result.mail == "confirm" else None
            return {}, SignUpMail(
                result.mail,
                subscriber.id,
                subscriber.email,
                result.nonce,
                speaks or subscriber.language,
            )
    except IntegrityError:
        # The same new address signed up twice at once: the other request mails them.
        return {}, None


@dataclass(frozen=True)
class ConfirmedSignUp:
    """A confirmed sign-up as its page shows it: the address, the preferences applied and the
    titles of the topics among them."""

    email: str
    preferences: Preferences
    topic_titles: list[str]


def confirm_sign_up(
    engine: Engine, secret: str, token: str, *, now: datetime, valid_for: timedelta
) -> ConfirmedSignUp | None:
    """Confirm the sign-up request a confirm link's ``token`` names if both are younger than
    ``valid_for``; None, changing nothing, for any other token."""
    with session_scope(engine) as session:
        max_age = int(valid_for.total_seconds())
        target = link_target(session, secret, "confirm", token, max_age=max_age)
        if target is None:
            return None
        subscriber, nonce = target
        assert subscriber.id is not None
        done = signup.confirm(session, subscriber.id, nonce, now=now, valid_for=valid_for)
        if done is None:
            return None
        titles = {topic.slug: topic.title for topic in store.topics(session)}
        applied = done.preferences
        topics = [titles[slug] for slug in applied.topic_slugs if slug in titles]
        return ConfirmedSignUp(subscriber.email, applied, topics)


def save_preferences(
    session: Session, subscriber: Subscriber, form: PreferencesForm, *, language: str = "en"
) -> dict[str, str]:
    """Check the preference form and save it for ``subscriber``: what is wrong with each field,
    in ``language`` (nothing when it was saved)."""
    slugs = {topic.slug for topic in store.topics(session)}
    check = check_form(form, topic_slugs=slugs, with_email=False, language=language)
    if check.preferences is None:
        return check.errors
    try:
        signup.set_preferences(session, subscriber, check.preferences)
    except DigestError as exc:
        session.rollback()
        return field_error(exc)
    return {}


def current_form(session: Session, subscriber_id: int) -> PreferencesForm | None:
    """A subscriber's stored preferences as a filled-in form; None if there is no such one."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    queries = store.queries_of(session, subscriber_id)
    topics = [t.slug for t in store.topics_of(session, subscriber_id)]
    return subscriber_form(subscriber, queries, topics)


def field_error(exc: DigestError) -> dict[str, str]:
    """An error the store found after the form's own checks, put next to the likely field."""
    if isinstance(exc, QueryError):
        return {"queries": str(exc)}
    if isinstance(exc, NotFoundError):
        return {"topics": exc.message}
    return {"queries": exc.message}
