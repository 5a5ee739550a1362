"""The HTML pages: the front page with its sign-up form, confirming, the preference page,
unsubscribing, and the live query check behind the keywords field.

GET never changes anything; every change is a POST carrying the CSRF field (except the RFC 8058
one-click unsubscribe). A page reached through a token looks the same whether the token is
valid, forged, expired or meant for something else, so nobody learns from it who is subscribed;
only a confirm link that applies its sign-up shows what it applied (its holder got it by mail).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from digestd import store
from digestd.db import read_scope, session_scope
from digestd.models import Subscriber
from digestd.runtime import Runtime
from digestd.store import signup
from digestd.store.signup import unsubscribed_themselves
from digestd.tokens import link_url
from digestd.web.actions import (
    confirm_sign_up,
    current_form,
    record_sign_up,
    save_preferences,
)
from digestd.web.forms import (
    WEEKDAY_NAMES,
    PreferencesForm,
    default_form,
    read_form,
    timezone_choices,
)
from digestd.web.mails import send_sign_up_mail
from digestd.web.recent import (
    RECENT_DAYS,
    QueryCheck,
    check_queries_text,
    describe_check,
    topic_views,
)
from digestd.web.security import SignUpRateLimit, client_address, csrf_ok, subscriber_by_token
from digestd.web.templating import PageRenderer

_HTML: dict[str, Any] = {"text/html": {}}
_FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The CSRF field does not match its cookie", "content": _HTML},
}
_INVALID_FORM: dict[int | str, dict[str, Any]] = {
    400: {"description": "A field is wrong: the form again, with the error", "content": _HTML},
    **_FORM_ERRORS,
}
_MANAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_INVALID_FORM,
    409: {
        "description": "Unsubscribed: nothing is saved, the page says how to return",
        "content": _HTML,
    },
}

# Form fields as FastAPI reads them (and /openapi.json describes them).
Text = Annotated[str, Form(max_length=100_000)]
OptionalText = Annotated[str | None, Form(max_length=100_000)]
Topics = Annotated[list[str] | None, Form()]


class WebPages:
    """The pages of one site: its settings, database, clock and sign-up limiter."""

    def __init__(self, runtime: Runtime) -> None:
        """Pages for ``runtime``'s settings on its engine, on its clock."""
        self.runtime = runtime
        self.settings = settings = runtime.settings
        self.engine = runtime.engine
        self.clock = clock = runtime.clock
        self.secret = runtime.link_secret
        self.pages = PageRenderer(settings)
        self.limiter = SignUpRateLimit(settings.web.subscribe_per_hour, clock=clock)

    def router(self) -> APIRouter:
        """The routes of the pages."""
        router = APIRouter()
        html: dict[str, Any] = {"response_class": HTMLResponse}
        router.add_api_route("/", self.front_page, methods=["GET"], **html)
        router.add_api_route(
            "/subscribe",
            self.subscribe,
            methods=["POST"],
            responses={
                **_INVALID_FORM,
                429: {"description": "Too many sign-ups from this client", "content": _HTML},
            },
            **html,
        )
        for path, get, post in (
            ("/confirm/{token}", self.confirm_page, self.confirm),
            ("/manage/{token}", self.manage_page, self.manage),
            ("/unsubscribe/{token}", self.unsubscribe_page, self.unsubscribe),
        ):
            router.add_api_route(path, get, methods=["GET"], **html)
            errors = _MANAGE_ERRORS if post == self.manage else _FORM_ERRORS
            router.add_api_route(path, post, methods=["POST"], responses=errors, **html)
        router.add_api_route(
            "/api/query-check", self.query_check, methods=["GET"], response_model=QueryCheck
        )
        return router

    # The pages

    def front_page(self, request: Request) -> Response:
        """The topics with their feeds and newest papers, and the sign-up form."""
        schedule = self.settings.schedule
        form = default_form(
            timezone=schedule.default_timezone,
            send_hour=schedule.default_send_hour,
            weekday=schedule.weekly_day,
        )
        return self._front(request, form, {}, status=200, fresh=True)

    async def subscribe(
        self,
        request: Request,
        background: BackgroundTasks,
        email: Text = "",
        queries: Text = "",
        topics: Topics = None,
        frequency: OptionalText = None,
        send_hour: OptionalText = None,
        timezone: OptionalText = None,
        weekday: OptionalText = None,
        revised_papers: Text = "",
        csrf: Text = "",
    ) -> Response:
        """Sign up: a pending subscriber and a confirmation mail (sent after the answer), or the
        form again with what is wrong. The answer is the same for every valid address."""
        wait = self.limiter.allow(client_address(request, proxy_headers=self._proxied))
        if wait is not None:
            return self._too_many(wait)
        if not csrf_ok(request, csrf):
            return self.pages.forbidden()
        schedule = self.settings.schedule
        form = read_form(
            email=email,
            queries=queries,
            topics=topics or [],
            frequency="daily" if frequency is None else frequency,
            send_hour=str(schedule.default_send_hour) if send_hour is None else send_hour,
            timezone=schedule.default_timezone if timezone is None else timezone,
            weekday=schedule.weekly_day if weekday is None else weekday,
            revised_papers=revised_papers,
        )
        errors, mail = await run_in_threadpool(
            record_sign_up,
            self.engine,
            form,
            now=self.clock(),
            resend_after=timedelta(minutes=self.settings.web.confirm_resend_minutes),
        )
        if errors:
            return await run_in_threadpool(self._front, request, form, errors, status=400)
        if mail is not None:
            # Sent after the answer: how long the mail takes must not tell anyone whether
            # the address was already known.
            background.add_task(
                send_sign_up_mail,
                self.runtime,
                kind=mail.kind,
                subscriber_id=mail.subscriber_id,
                email=mail.email,
                now=self.clock(),
                nonce=mail.nonce,
            )
        return self.pages.message(
            "Check your inbox",
            "If this address can receive our mail, a message is on its way to it.",
            "Open the link in it to confirm your subscription. Nothing else is sent to you "
            "until you do.",
        )

    def _too_many(self, wait: timedelta) -> Response:
        """429: too many sign-ups from one network; try again after ``wait``."""
        response = self.pages.message(
            "Too many sign-ups",
            "Too many sign-ups came from your network in the last hour. Try again later.",
            status=429,
        )
        response.headers["Retry-After"] = str(int(wait.total_seconds()) + 1)
        return response

    def confirm_page(self, request: Request, token: str) -> Response:
        """A button that confirms (only the POST does: mail scanners follow links)."""
        return self.pages.form_page(request, "confirm.html", heading="Confirm your subscription")

    def confirm(self, request: Request, token: str, csrf: Text = "") -> Response:
        """Confirm the sign-up request the token names, applying exactly the preferences it
        asked for; the neutral "no longer valid" page for any other token."""
        if not csrf_ok(request, csrf):
            return self.pages.forbidden()
        done = confirm_sign_up(
            self.engine,
            self.secret,
            token,
            now=self.clock(),
            valid_for=timedelta(hours=self.settings.web.confirm_hours),
        )
        if done is None:
            return self.pages.stale_confirmation()
        return self.pages.confirmed(done.email, done.preferences, done.topic_titles)

    def manage_page(self, request: Request, token: str) -> Response:
        """The subscriber's preferences, or the neutral page for a bad token."""
        with read_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "manage", token)
            if subscriber is None or subscriber.id is None:
                return self.pages.invalid_link()
            if subscriber.suppressed_at is not None:
                return self._stopped(subscriber)
            form = current_form(session, subscriber.id)
        assert form is not None
        return self._manage(request, form, {}, subscriber.id)

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
        csrf: Text = "",
    ) -> Response:
        """Save the preferences, or show the form again with what is wrong."""
        if not csrf_ok(request, csrf):
            return self.pages.forbidden()
        with session_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "manage", token)
            if subscriber is None or subscriber.id is None:
                return self.pages.invalid_link()
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
            )
            form = dataclasses.replace(typed, email=subscriber.email)
            errors = save_preferences(session, subscriber, form)
            saved = None if errors else current_form(session, subscriber.id)
            subscriber_id = subscriber.id
        if saved is None:
            return self._manage(request, form, errors, subscriber_id, status=400)
        return self._manage(request, saved, {}, subscriber_id, notice="Preferences saved")

    def unsubscribe_page(self, request: Request, token: str) -> Response:
        """A button that unsubscribes."""
        return self.pages.form_page(request, "unsubscribe.html", heading="Unsubscribe")

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
            return self.pages.forbidden()
        with session_scope(self.engine) as session:
            subscriber = subscriber_by_token(session, self.secret, "unsubscribe", token)
            if subscriber is not None and subscriber.id is not None:
                how = "one-click" if one_click else "web"
                signup.unsubscribe(session, subscriber.id, how=how, now=self.clock())
        return self.pages.message(
            "You are unsubscribed",
            "No more digests are sent to this address.",
            "If this was a mistake, subscribe again from the front page.",
        )

    def query_check(self, queries: str = "") -> QueryCheck:
        """How many papers of the last days the keywords (one query per line) would have
        matched, or why they are not valid."""
        return check_queries_text(self.runtime, queries)

    # Building the answers

    @property
    def _proxied(self) -> bool:
        return self.settings.web.proxy_headers

    def _choices(self, session: Session, form: PreferencesForm, *, fresh: bool) -> dict[str, Any]:
        return {
            "topics": store.topics(session),
            "timezones": timezone_choices(form.timezone),
            "weekdays": WEEKDAY_NAMES,
            "check_url": f"{self.pages.root}/api/query-check",
            "detect_timezone": fresh,
        }

    def _front(
        self,
        request: Request,
        form: PreferencesForm,
        errors: dict[str, str],
        *,
        status: int,
        fresh: bool = False,
    ) -> Response:
        with read_scope(self.engine) as session:
            choices = self._choices(session, form, fresh=fresh)
            views = topic_views(self.runtime, session, choices["topics"])
        return self.pages.form_page(
            request,
            "index.html",
            status=status,
            heading=self.settings.digest.site_name,
            form=form,
            errors=errors,
            choices=choices,
            check_text="",
            topic_views=views,
            days=RECENT_DAYS,
        )

    def _manage(
        self,
        request: Request,
        form: PreferencesForm,
        errors: dict[str, str],
        subscriber_id: int,
        *,
        status: int = 200,
        notice: str = "",
    ) -> Response:
        base, email = self.settings.feeds.base_url, form.email
        with read_scope(self.engine) as session:
            choices = self._choices(session, form, fresh=False)
        check = check_queries_text(self.runtime, form.queries) if form.queries.strip() else None
        return self.pages.form_page(
            request,
            "manage.html",
            status=status,
            heading="Your preferences",
            form=form,
            errors=errors,
            choices=choices,
            check_text=describe_check(check) if check and "queries" not in errors else "",
            notice=notice,
            feed_url=link_url(base, self.secret, "feed", subscriber_id, email),
            unsubscribe_url=link_url(base, self.secret, "unsubscribe", subscriber_id, email),
        )

    def _stopped(self, subscriber: Subscriber, *, status: int = 200) -> Response:
        """The preference page of a subscriber no digest goes to: why, and how to start again;
        no form to save."""
        assert subscriber.id is not None
        base, email = self.settings.feeds.base_url, subscriber.email
        unsubscribed = unsubscribed_themselves(subscriber)
        return self.pages.page(
            "stopped.html",
            status=status,
            heading="You are unsubscribed" if unsubscribed else "Your digests are stopped",
            email=email,
            unsubscribed=unsubscribed,
            feed_url=link_url(base, self.secret, "feed", subscriber.id, email),
        )
