"""A subscriber's own pages, reached through the signed links of their mails: the preference
page, unsubscribing, and pausing for some days. Each is in the language the subscriber chose
(a link that does not work gets the neutral page in the visitor's language).

GET never changes anything (mail scanners open links); every change is a POST carrying the
CSRF field, except the RFC 8058 one-click unsubscribe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from digestd import store
from digestd.db import read_scope, session_scope
from digestd.models import Subscriber
from digestd.runtime import Runtime
from digestd.store import signup
from digestd.store.people import pause_for_days, paused_on
from digestd.store.signup import unsubscribed_themselves
from digestd.tokens import link_url
from digestd.web.actions import current_form, save_preferences
from digestd.web.forms import (
    LANGUAGE_NAMES,
    ORDER_NAMES,
    WEEKDAY_NAMES,
    PreferencesForm,
    check_phrases,
    describe_matches,
    read_form,
    timezone_choices,
    translated_names,
)
from digestd.web.recent import RECENT_DAYS, check_queries_text
from digestd.web.security import csrf_ok, subscriber_by_token
from digestd.web.templating import PageRenderer, visitor_language

_HTML: dict[str, Any] = {"text/html": {}}
FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The CSRF field does not match its cookie", "content": _HTML},
}
INVALID_FORM: dict[int | str, dict[str, Any]] = {
    400: {"description": "A field is wrong: the form again, with the error", "content": _HTML},
    **FORM_ERRORS,
}
MANAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **INVALID_FORM,
    409: {
        "description": "Unsubscribed: nothing is saved, the page says how to return",
        "content": _HTML,
    },
}
PAUSE_DAYS = (7, 14, 30)  # the pauses the pause page offers (0 resumes)

# Form fields as FastAPI reads them (and /openapi.json describes them).
Text = Annotated[str, Form(max_length=100_000)]
OptionalText = Annotated[str | None, Form(max_length=100_000)]
Topics = Annotated[list[str] | None, Form()]


@dataclass(frozen=True)
class SubscriberView:
    """What a subscriber's pages show of them besides the form: read while their session is
    open, shown after it closed."""

    email: str
    language: str
    paused_until: date | None  # a pause of some days that still holds
    manage_url: str
    pause_url: str
    feed_url: str
    unsubscribe_url: str


class OwnPages:
    """The pages of one subscriber, for ``runtime``'s site, rendered by ``pages``."""

    def __init__(self, runtime: Runtime, pages: PageRenderer) -> None:
        """Own pages for ``runtime``'s settings, engine and clock."""
        self.runtime = runtime
        self.settings = runtime.settings
        self.engine = runtime.engine
        self.clock = runtime.clock
        self.secret = runtime.link_secret
        self.pages = pages

    def manage_page(self, request: Request, token: str) -> Response:
        """The subscriber's preferences, or the neutral page for a bad token."""
        with read_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "manage", token)
            if subscriber is None or subscriber.id is None:
                return self._visitor(request).invalid_link()
            if subscriber.suppressed_at is not None:
                return self._stopped(subscriber)
            form = current_form(session, subscriber.id)
            view = self._view(subscriber)
        assert form is not None
        return self._manage(request, form, {}, view)

    def manage(
        self,
        request: Request,
        token: str,
        queries: Text = "",
        topics: Topics = None,
        frequency: Text = "",
        send_hour: Text = "",
        timezone: Text = "",
        weekday: Text = "",
        paused: Text = "",
        revised_papers: Text = "",
        language: OptionalText = None,
        digest_order: OptionalText = None,
        csrf: Text = "",
    ) -> Response:
        """Save the preferences, or show the form again with what is wrong (a language or
        order the form does not send stays as it is)."""
        if not csrf_ok(request, csrf):
            return self._visitor(request).forbidden()
        with session_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "manage", token)
            if subscriber is None or subscriber.id is None:
                return self._visitor(request).invalid_link()
            if subscriber.suppressed_at is not None:
                # Nothing an old page sends (its pause box, any field) subscribes them again:
                # only a new sign-up, confirmed from its own mail, does.
                return self._stopped(subscriber, status=409)
            typed = read_form(
                queries=queries,
                topics=topics or [],
                frequency=frequency,
                send_hour=send_hour,
                timezone=timezone,
                weekday=weekday,
                paused=paused,
                revised_papers=revised_papers,
                language=subscriber.language if language is None else language,
                digest_order=subscriber.digest_order if digest_order is None else digest_order,
            )
            form = dataclasses.replace(typed, email=subscriber.email)
            view = self._view(subscriber)  # before saving: a failed save expires the object
            errors = save_preferences(session, subscriber, form, language=view.language)
            saved = None if errors else current_form(session, subscriber.id)
        if saved is None:
            return self._manage(request, form, errors, view, status=400)
        notice = self.pages.in_language(saved.language).gettext("Preferences saved")
        return self._manage(request, saved, {}, view, notice=notice)

    def unsubscribe_page(self, request: Request, token: str) -> Response:
        """A button that unsubscribes."""
        with read_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "unsubscribe", token)
            pages = self._speaking(request, subscriber)
        return pages.form_page(request, "unsubscribe.html", heading=pages.gettext("Unsubscribe"))

    def unsubscribe(
        self,
        request: Request,
        token: str,
        list_unsubscribe: Annotated[str, Form(alias="List-Unsubscribe", max_length=100)] = "",
        csrf: Text = "",
    ) -> Response:
        """Unsubscribe the token's subscriber: from the page's button (CSRF field required),
        or at once from a mail client's RFC 8058 one-click POST (no cookie to check)."""
        one_click = list_unsubscribe == "One-Click"
        if not one_click and not csrf_ok(request, csrf):
            return self._visitor(request).forbidden()
        with session_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "unsubscribe", token)
            pages = self._speaking(request, subscriber)
            if subscriber is not None and subscriber.id is not None:
                how = "one-click" if one_click else "web"
                signup.unsubscribe(session, subscriber.id, how=how, now=self.clock())
        _ = pages.gettext
        return pages.message(
            _("You are unsubscribed"),
            _("No more digests are sent to this address."),
            _("If this was a mistake, subscribe again from the front page."),
        )

    def pause_page(self, request: Request, token: str) -> Response:
        """How long to pause the digests for (and resuming, when paused); changes nothing."""
        with read_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "pause", token)
            if subscriber is None or subscriber.id is None:
                return self._visitor(request).invalid_link()
            if subscriber.suppressed_at is not None:
                return self._stopped(subscriber)
            view = self._view(subscriber)
        return self._pause_form(request, view)

    def pause(self, request: Request, token: str, days: Text = "", csrf: Text = "") -> Response:
        """Pause the digests for the chosen number of days from the subscriber's today, or
        resume them (0 days)."""
        if not csrf_ok(request, csrf):
            return self._visitor(request).forbidden()
        with session_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "pause", token)
            if subscriber is None or subscriber.id is None:
                return self._visitor(request).invalid_link()
            if subscriber.suppressed_at is not None:
                return self._stopped(subscriber, status=409)
            pages = self.pages.in_language(subscriber.language)
            if days not in {str(n) for n in (0, *PAUSE_DAYS)}:
                error = pages.gettext("Choose how many days to pause.")
                view = self._view(subscriber)
                return self._pause_form(request, view, error=error, status=400)
            until = pause_for_days(subscriber, int(days), now=self.clock())
            session.add(subscriber)
        _ = pages.gettext
        if until is None:
            return pages.message(
                _("Your digests are resumed"), _("The next digest comes at its usual time.")
            )
        return pages.message(
            _("Digests paused until %(date)s", date=pages.date(until)),
            _("They start again by themselves on that day."),
        )

    # Building the answers

    def choices(
        self, session: Session, form: PreferencesForm, *, language: str, fresh: bool
    ) -> dict[str, Any]:
        """What the preference fields offer, in ``language``."""
        one, many = check_phrases(RECENT_DAYS, language)
        return {
            "topics": store.topics(session),
            "timezones": timezone_choices(form.timezone),
            "weekdays": translated_names(WEEKDAY_NAMES, language),
            "orders": translated_names(ORDER_NAMES, language),
            "languages": LANGUAGE_NAMES,
            "check_url": f"{self.pages.root}/api/query-check?lang={language}",
            "check_one": one,
            "check_many": many,
            "detect_timezone": fresh,
        }

    def _visitor(self, request: Request) -> PageRenderer:
        """The renderer for someone we do not know."""
        return self.pages.in_language(
            visitor_language(request, self.settings.digest.default_language)
        )

    def _speaking(self, request: Request, subscriber: Subscriber | None) -> PageRenderer:
        """The renderer in the subscriber's language, or the visitor's without one."""
        if subscriber is None:
            return self._visitor(request)
        return self.pages.in_language(subscriber.language)

    def _link(self, purpose: str, subscriber: Subscriber) -> str:
        assert subscriber.id is not None
        base = self.settings.feeds.base_url
        return link_url(base, self.secret, purpose, subscriber.id, subscriber.email)

    def _view(self, subscriber: Subscriber) -> SubscriberView:
        """What the subscriber's pages show of them besides the form."""
        return SubscriberView(
            email=subscriber.email,
            language=subscriber.language,
            paused_until=subscriber.paused_until if paused_on(subscriber, self.clock()) else None,
            manage_url=self._link("manage", subscriber),
            pause_url=self._link("pause", subscriber),
            feed_url=self._link("feed", subscriber),
            unsubscribe_url=self._link("unsubscribe", subscriber),
        )

    def _manage(
        self,
        request: Request,
        form: PreferencesForm,
        errors: dict[str, str],
        view: SubscriberView,
        *,
        status: int = 200,
        notice: str = "",
    ) -> Response:
        pages = self.pages.in_language(view.language if errors else form.language)
        with read_scope(self.engine) as session:
            choices = self.choices(session, form, language=pages.language, fresh=False)
        check_text = ""
        if form.queries.strip() and "queries" not in errors:
            check = check_queries_text(self.runtime, form.queries)
            valid = describe_matches(check.matches, check.days, pages.language)
            check_text = valid if check.valid else check.error
        return pages.form_page(
            request,
            "manage.html",
            status=status,
            heading=pages.gettext("Your preferences"),
            form=form,
            errors=errors,
            choices=choices,
            check_text=check_text,
            notice=notice,
            paused_until=pages.date(view.paused_until) if view.paused_until else "",
            pause_url=view.pause_url,
            feed_url=view.feed_url,
            unsubscribe_url=view.unsubscribe_url,
        )

    def _pause_form(
        self, request: Request, view: SubscriberView, *, error: str = "", status: int = 200
    ) -> Response:
        pages = self.pages.in_language(view.language)
        return pages.form_page(
            request,
            "pause.html",
            status=status,
            heading=pages.gettext("Pause your digests"),
            email=view.email,
            paused_until=pages.date(view.paused_until) if view.paused_until else "",
            pause_days=PAUSE_DAYS,
            error=error,
            manage_url=view.manage_url,
        )

    def _stopped(self, subscriber: Subscriber, *, status: int = 200) -> Response:
        """The preference page of a subscriber no digest goes to: why, and how to start again;
        no form to save."""
        pages = self.pages.in_language(subscriber.language)
        unsubscribed = unsubscribed_themselves(subscriber)
        _ = pages.gettext
        return pages.page(
            "stopped.html",
            status=status,
            heading=_("You are unsubscribed") if unsubscribed else _("Your digests are stopped"),
            email=subscriber.email,
            unsubscribed=unsubscribed,
            feed_url=self._link("feed", subscriber),
        )
