"""The web application's Jinja environments (one per language), its static files, and
rendering pages.

Templates come from the configured templates folder when it has them, else from the bundled
one, so an operator can override one page without copying them all. Their fixed words go
through gettext (``{{ _("...") }}``, jinja2.ext.i18n with newstyle gettext), translated by the
catalogs of digestd.i18n.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digestd.config import Settings
from digestd.i18n import accepted_language, language_or_default, long_date, translations
from digestd.render import default_templates_dir
from digestd.store.signup import Preferences
from digestd.validation import LANGUAGES
from digestd.web.forms import ORDER_NAMES, WEEKDAY_NAMES, translated_names
from digestd.web.security import csrf_value, set_csrf_cookie


@lru_cache(maxsize=4 * (len(LANGUAGES) + 1))
def web_environment(templates_dir: Path | None, language: str = "en") -> jinja2.Environment:
    """A Jinja environment for the pages and mails in ``language``: autoescaping for .html,
    strict names, gettext from the language's catalog."""
    folders = [str(templates_dir)] if templates_dir else []
    folders.append(str(default_templates_dir()))
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(["html", "xml", "htm"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_gettext_translations(  # type: ignore[attr-defined]
        translations(language), newstyle=True
    )
    environment.globals["lang"] = language
    return environment


def visitor_language(request: Request, default: str) -> str:
    """The language of a page for a visitor we do not know: ``?lang=`` if digestd speaks it,
    else the best match of their Accept-Language header, else ``default``."""
    asked = request.query_params.get("lang", "")
    if asked in LANGUAGES:
        return asked
    return accepted_language(request.headers.get("accept-language", "")[:1000], default)


def static_dir(templates_dir: Path | None) -> Path:
    """The folder served at /static: the configured one's web/static if it exists."""
    if templates_dir and (templates_dir / "web" / "static").is_dir():
        return templates_dir / "web" / "static"
    return default_templates_dir() / "web" / "static"


def template_source(environment: jinja2.Environment, name: str) -> str:
    """The text of a template file (a stylesheet, say) as the loader finds it."""
    assert environment.loader is not None
    source, _filename, _uptodate = environment.loader.get_source(environment, name)
    return source


class PageRenderer:
    """Renders the site's pages in one language as no-store HTML responses (UTF-8, whatever
    the text)."""

    def __init__(self, settings: Settings, language: str | None = None) -> None:
        """A renderer for the site ``settings`` describe, in ``language`` (by default the
        site's default language)."""
        self.settings = settings
        self.language = language_or_default(language, settings.digest.default_language)
        self.environment = web_environment(settings.templates_dir, self.language)
        self.translations = translations(self.language)
        self.site_name = settings.digest.site_name
        base = urlsplit(settings.feeds.base_url)
        self.root = base.path.rstrip("/")  # the site's path under its host, "" at the top
        self.secure_cookie = base.scheme == "https"

    def in_language(self, language: str | None) -> PageRenderer:
        """This site's renderer in ``language`` (the default one for an unknown language)."""
        if language == self.language:
            return self
        return PageRenderer(self.settings, language)

    def gettext(self, message: str, **values: object) -> str:
        """``message`` in the renderer's language, with ``values`` put in its placeholders."""
        text = self.translations.gettext(message)
        return text % values if values else text

    def date(self, day: date) -> str:
        """``day`` written out in the renderer's language."""
        return long_date(day, self.language)

    def page(self, template: str, *, status: int = 200, **context: Any) -> Response:
        """The page ``web/<template>`` rendered with ``context``."""
        html = self.environment.get_template(f"web/{template}").render(
            site_name=self.site_name, root=self.root, **context
        )
        return HTMLResponse(
            html.encode("utf-8", "replace"),
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )

    def form_page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> Response:
        """A page with a form: its ``csrf`` field is the request's CSRF cookie, set anew if
        the request had none."""
        csrf, new = csrf_value(request)
        response = self.page(template, status=status, csrf=csrf, **context)
        if new:
            set_csrf_cookie(response, csrf, secure=self.secure_cookie)
        return response

    def message(self, heading: str, *lines: str, status: int = 200, home: bool = False) -> Response:
        """A page of a heading and a few lines (and with ``home``, a link to the front page)."""
        return self.page("message.html", status=status, heading=heading, lines=lines, home=home)

    def confirmed(
        self, email: str, preferences: Preferences, topic_titles: Sequence[str]
    ) -> Response:
        """The page after confirming: the preferences the confirmed sign-up applied."""
        weekdays = translated_names(WEEKDAY_NAMES, self.language)
        return self.page(
            "confirmed.html",
            heading=self.gettext("You are subscribed"),
            email=email,
            queries=list(preferences.queries),
            topics=list(topic_titles),
            frequency=preferences.frequency,
            weekday=weekdays.get(preferences.weekday, preferences.weekday),
            digest_order=translated_names(ORDER_NAMES, self.language).get(
                preferences.digest_order, preferences.digest_order
            ),
            send_hour=f"{preferences.send_hour:02d}:00",
            timezone=preferences.timezone,
            revised_papers=preferences.revised_papers,
        )

    def stale_confirmation(self) -> Response:
        """The neutral page for a confirm link that does not work (forged, expired, used, or
        withdrawn by an unsubscribe): whoever holds a real one got it in their own mail."""
        _ = self.gettext
        return self.message(
            _("This link is no longer valid"),
            _(
                "A confirmation link works once, for a limited time, and not after an "
                "unsubscribe. If you confirmed already, your digests are on their way."
            ),
            _("To subscribe, sign up again on the front page and open the link in the new mail."),
            home=True,
        )

    def forbidden(self) -> Response:
        """The answer to a form whose CSRF field does not match."""
        _ = self.gettext
        return self.message(
            _("This form has expired"),
            _("Go back, reload the page and send the form again."),
            status=403,
        )

    def invalid_link(self) -> Response:
        """The neutral page for a link that does not work (whatever the reason)."""
        _ = self.gettext
        return self.message(
            _("This link is no longer valid"),
            _("The link in your newest digest leads to your preferences."),
        )
