"""How the site answers what no page answers itself: error pages, trailing-slash redirects and
HEAD.

Every error is an HTML page in the site's style (a short message and a link home), never the
framework's JSON, and never the text of an exception. A path that differs from a route only by
a trailing slash is redirected to that route on ``[feeds] base_url``: nothing in an answer is
built from the request's Host header, and a path that could read as another host (``//x``,
``/\\x``) is never redirected at all. HEAD is answered wherever GET is, with GET's headers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digestd.db import driver_line
from digestd.i18n import N_
from digestd.web.templating import PageRenderer, visitor_language

log = logging.getLogger("digestd.web")

# What each error page says: its heading and one line. Nothing from the request is shown, so
# a forged link's 404 reads exactly like an unknown page's.
# Translated where shown, in the visitor's language.
ERROR_PAGES: dict[int, tuple[str, str]] = {
    404: (N_("Page not found"), N_("There is no page at this address: the link may be cut short.")),
    405: (N_("Not possible here"), N_("This page does not take that kind of request.")),
    422: (
        N_("This request cannot be read"),
        N_("Something in it is missing or not in the expected form. Go back and try again."),
    ),
    500: (
        N_("Something went wrong"),
        N_("The error was logged for the operator. Try again later."),
    ),
    503: (N_("Temporarily unavailable"), N_("Please try again in a few minutes.")),
}
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Characters a redirect's path keeps as they are; everything else (a backslash too) is encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def error_page(renderer: PageRenderer, status: int, request: Request | None = None) -> Response:
    """The site's page for an error ``status``, in the visitor's language when ``request``
    says it (``?lang=``, Accept-Language)."""
    if request is not None:
        renderer = renderer.in_language(visitor_language(request, renderer.language))
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    heading, line = ERROR_PAGES.get(status, (phrase, N_("This request could not be answered.")))
    return renderer.message(
        renderer.gettext(heading), renderer.gettext(line), status=status, home=True
    )


def install_error_pages(app: FastAPI, renderer: PageRenderer, *, base_url: str) -> None:
    """Answer every error of ``app`` with the site's pages, the 404 of a path one trailing
    slash away from a route with a redirect to that route on ``base_url``, and an exception
    with the 500 page (logged, its text shown to nobody)."""
    site = base_url.rstrip("/")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404 and "route" not in request.scope:
            # No route took the path (a page's own 404, a feed that is not there, is final).
            location = slash_redirect(request.scope, app.router.routes, site=site)
            if location is not None:
                return RedirectResponse(location, status_code=307)
        response = error_page(renderer, exc.status_code, request)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            # The router names only the first route it found for the path: name them all.
            allowed = allowed_methods(request.scope, app.router.routes)
            response.headers["Allow"] = allowed or response.headers.get("Allow", "")
        return response

    async def invalid_request(request: Request, exc: Exception) -> Response:
        return error_page(renderer, 422, request)

    async def unavailable(request: Request, exc: Exception) -> Response:
        # The database is down or locked for too long: a page that says so, not a traceback.
        route = _route_of(request.scope)
        log.error("%s %s: database unavailable: %s", request.method, route, driver_line(exc))
        response = error_page(renderer, 503, request)
        response.headers["Retry-After"] = "60"
        return response

    app.router.redirect_slashes = False  # Starlette's own redirect is built on the Host header
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(SQLAlchemyError, unavailable)
    app.add_middleware(ServerErrorPage, renderer=renderer)


def slash_redirect(scope: Scope, routes: Sequence[BaseRoute], *, site: str) -> str | None:
    """Where to send a request whose path matches no route but would with its trailing slash
    added or removed: that path on ``site`` (with the query); None for any other path, and
    for every path that starts with two slashes or holds a backslash."""
    path: str = scope.get("path", "")
    if path in ("", "/") or path.startswith("//") or "\\" in path or not path.startswith("/"):
        return None
    flipped = path.rstrip("/") if path.endswith("/") else path + "/"
    if flipped in ("", "/"):
        return None
    moved = {**scope, "path": flipped}
    # Static files are left out: a file's name never changes by a slash.
    if not any(
        not isinstance(route, Mount) and route.matches(dict(moved))[0] is not Match.NONE
        for route in routes
    ):
        return None
    query = scope.get("query_string", b"").decode("latin-1")
    return site + quote(flipped, safe=_PATH_SAFE) + (f"?{query}" if query else "")


def allowed_methods(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The Allow header for a path: every method some route takes there (HEAD with GET); ""
    for a path only a mount serves (the mounted application says what it takes)."""
    methods = {
        method
        for method in _METHOD_ORDER
        if any(
            not isinstance(route, Mount)
            and route.matches({**scope, "method": method})[0] is Match.FULL
            for route in routes
        )
    }
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(method for method in _METHOD_ORDER if method in methods)


def _route_of(scope: Scope) -> str:
    # The route's pattern, never the path itself: paths carry signed tokens.
    route = scope.get("route")
    return str(getattr(route, "path", "")) or "(no route)"


class ServerErrorPage:
    """ASGI middleware: an exception that escapes the application becomes the 500 page
    (when no answer was started yet) and a log line with its traceback."""

    def __init__(self, app: ASGIApp, renderer: PageRenderer) -> None:
        """Wrap ``app``; ``renderer`` draws the page."""
        self.app = app
        self.renderer = renderer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; answer 500 if it raises before answering."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception:
            log.exception("%s %s failed", scope.get("method", "?"), _route_of(scope))
            if started:
                raise
            await error_page(self.renderer, 500)(scope, receive, send)


class HeadAsGet:
    """ASGI middleware: HEAD is answered wherever GET is, as GET would be (status and headers,
    Content-Length included) without the body. Routes that take HEAD themselves (the feeds,
    static files) get it as it is."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        """Wrap ``app``, whose routes ``router`` holds."""
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; a HEAD one as GET unless a route takes HEAD, never a body."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A route matches HEAD fully only if it takes HEAD (a mount: whatever the method).
        if not any(route.matches(scope)[0] is Match.FULL for route in self.router.routes):
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send_without_body)
