"""The HTML pages: the front page with its sign-up form, confirming, and the live query check
behind the keywords field; the router of every page (a subscriber's own pages, reached by a
token, are in own_pages.py).

GET never changes anything; every change is a POST carrying the CSRF field (except the RFC 8058
one-click unsubscribe). A page reached through a token looks the same whether the token is
valid, forged, expired or meant for something else, so nobody learns from it who is subscribed;
only a confirm link that applies its sign-up shows what it applied (its holder got it by mail).

A visitor's pages are in the language of ``?lang=`` or their browser (Accept-Language); a
subscriber's own pages in the language they chose.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from digestd.db import read_scope
from digestd.i18n import language_or_default
from digestd.runtime import Runtime
from digestd.store.signup import request_language
from digestd.validation import LANGUAGES
from digestd.web.actions import SignUpMail, confirm_sign_up, record_sign_up
from digestd.web.forms import (
    PreferencesForm,
    clean_text,
    default_form,
    query_text_error,
    read_form,
)
from digestd.web.mails import send_sign_up_mail
from digestd.web.own_pages import (
    FORM_ERRORS,
    INVALID_FORM,
    MANAGE_ERRORS,
    OptionalText,
    OwnPages,
    Text,
    Topics,
)
from digestd.web.recent import RECENT_DAYS, QueryCheck, check_queries_text, topic_views
from digestd.web.security import SignUpRateLimit, client_address, csrf_ok, link_target
from digestd.web.templating import PageRenderer, visitor_language

_HTML: dict[str, Any] = {"text/html": {}}


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
        self.own = OwnPages(runtime, self.pages)

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
                **INVALID_FORM,
                429: {"description": "Too many sign-ups from this client", "content": _HTML},
            },
            **html,
        )
        own = self.own
        for path, get, post, errors in (
            ("/confirm/{token}", self.confirm_page, self.confirm, FORM_ERRORS),
            ("/manage/{token}", own.manage_page, own.manage, MANAGE_ERRORS),
            ("/unsubscribe/{token}", own.unsubscribe_page, own.unsubscribe, FORM_ERRORS),
            ("/pause/{token}", own.pause_page, own.pause, MANAGE_ERRORS),
        ):
            router.add_api_route(path, get, methods=["GET"], **html)
            router.add_api_route(path, post, methods=["POST"], responses=errors, **html)
        router.add_api_route(
            "/api/query-check", self.query_check, methods=["GET"], response_model=QueryCheck
        )
        return router

    # The pages

    def front_page(self, request: Request) -> Response:
        """The topics with their feeds and newest papers, and the sign-up form, in the
        visitor's language."""
        schedule = self.settings.schedule
        language = self._visitor_language(request)
        form = default_form(
            timezone=schedule.default_timezone,
            send_hour=schedule.default_send_hour,
            weekday=schedule.weekly_day,
            language=language,
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
        language: OptionalText = None,
        digest_order: OptionalText = None,
        csrf: Text = "",
    ) -> Response:
        """Sign up: a pending subscriber and a confirmation mail (sent after the answer), or the
        form again with what is wrong. The answer is the same for every valid address."""
        wait = self.limiter.allow(client_address(request, proxy_headers=self._proxied))
        visitor = self._visitor_language(request)
        if wait is not None:
            return self._too_many(wait, visitor)
        if not csrf_ok(request, csrf):
            return self.pages.in_language(visitor).forbidden()
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
            language=visitor if language is None else language,
            digest_order="relevance" if digest_order is None else digest_order,
        )
        resend_after = timedelta(minutes=self.settings.web.confirm_resend_minutes)
        errors, mail = await run_in_threadpool(
            record_sign_up,
            self.engine,
            form,
            now=self.clock(),
            resend_after=resend_after,
            language=language_or_default(form.language, visitor),
        )
        if errors:
            return await run_in_threadpool(self._front, request, form, errors, status=400)
        if mail is not None:
            # Sent after the answer: how long the mail takes must not tell anyone whether
            # the address was already known.
            background.add_task(self._send_mail, mail)
        return self._check_inbox(form.language)

    async def _send_mail(self, mail: SignUpMail) -> None:
        await send_sign_up_mail(
            self.runtime,
            kind=mail.kind,
            subscriber_id=mail.subscriber_id,
            email=mail.email,
            now=self.clock(),
            nonce=mail.nonce,
            language=mail.language,
        )

    def _check_inbox(self, language: str) -> Response:
        """The answer to every sign-up that was recorded (or needed no mail)."""
        pages = self.pages.in_language(language)
        _ = pages.gettext
        return pages.message(
            _("Check your inbox"),
            _("If this address can receive our mail, a message is on its way to it."),
            _(
                "Open the link in it to confirm your subscription. Nothing else is sent to you "
                "until you do."
            ),
        )

    def _too_many(self, wait: timedelta, language: str) -> Response:
        """429: too many sign-ups from one network; try again after ``wait``."""
        pages = self.pages.in_language(language)
        response = pages.message(
            pages.gettext("Too many sign-ups"),
            pages.gettext(
                "Too many sign-ups came from your network in the last hour. Try again later."
            ),
            status=429,
        )
        response.headers["Retry-After"] = str(int(wait.total_seconds()) + 1)
        return response

    def confirm_page(self, request: Request, token: str) -> Response:
        """A button that confirms (only the POST does: mail scanners follow links), in the
        language the sign-up asked for."""
        language = self._visitor_language(request)
        with read_scope(self.engine) as session:
            target = link_target(session, self.secret, "confirm", token)
            if target is not None and target[0].id is not None:
                subscriber, nonce = target
                language = request_language(session, target[0].id, nonce) or subscriber.language
        pages = self.pages.in_language(language)
        return pages.form_page(
            request, "confirm.html", heading=pages.gettext("Confirm your subscription")
        )

    def confirm(self, request: Request, token: str, csrf: Text = "") -> Response:
        """Confirm the sign-up request the token names, applying exactly the preferences it
        asked for; the neutral "no longer valid" page for any other token."""
        visitor = self.pages.in_language(self._visitor_language(request))
        if not csrf_ok(request, csrf):
            return visitor.forbidden()
        done = confirm_sign_up(
            self.engine,
            self.secret,
            token,
            now=self.clock(),
            valid_for=timedelta(hours=self.settings.web.confirm_hours),
        )
        if done is None:
            return visitor.stale_confirmation()
        pages = self.pages.in_language(done.preferences.language)
        return pages.confirmed(done.email, done.preferences, done.topic_titles)

    def query_check(self, queries: str = "", lang: str = "") -> QueryCheck:
        """How many papers of the last days the keywords (one query per line) would have
        matched, or why they are not valid (in the language ``lang``)."""
        language = language_or_default(lang, self.settings.digest.default_language)
        error = query_text_error(clean_text(queries), language)
        if error is not None:
            return QueryCheck(valid=False, error=error, matches=0, days=RECENT_DAYS, lines=[])
        return check_queries_text(self.runtime, queries)

    # Building the answers

    @property
    def _proxied(self) -> bool:
        return self.settings.web.proxy_headers

    def _visitor_language(self, request: Request) -> str:
        return visitor_language(request, self.settings.digest.default_language)

    def _front(
        self,
        request: Request,
        form: PreferencesForm,
        errors: dict[str, str],
        *,
        status: int,
        fresh: bool = False,
    ) -> Response:
        language = language_or_default(form.language, self._visitor_language(request))
        pages = self.pages.in_language(language)
        with read_scope(self.engine) as session:
            choices = self.own.choices(session, form, language=language, fresh=fresh)
            views = topic_views(self.runtime, session, choices["topics"])
        return pages.form_page(
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
            languages=LANGUAGES,
        )
