"""The "View in browser" page: a digest that was mailed, as a web page at /digest/<token>.

The token names the subscriber and the digest's key; the page is the digest built again from
the store (plan_job.stored_digest) and rendered by the mail's own templates, so a forwarded or
clipped mail can always be read whole. It is for its recipient alone: never indexed, never
cached by others, sending no Referer. A forged or foreign token, a key with no digest that
carried papers, and a subscriber who was removed or unsubscribed all get the site's 404 page,
so nobody learns from it who is subscribed. GET records nothing.

The mail's HTML is styled inline (``style`` attributes), which the site's Content-Security-
Policy (security.py: ``style-src 'self'``) forbids; this page brings its own policy, which
allows inline styles and images over https but no scripts, forms or framing.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from digestd.db import read_scope
from digestd.jobs.plan_job import stored_digest
from digestd.render import mail_options, render_digest
from digestd.runtime import Runtime
from digestd.store.signup import unsubscribed_themselves
from digestd.web.security import link_target

DIGEST_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
NOINDEX = "noindex, nofollow"
PAGE_HEADERS = {
    "Content-Security-Policy": DIGEST_PAGE_POLICY,
    "X-Robots-Tag": NOINDEX,
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}
_ROBOTS_META = re.compile(r"""<meta\s[^>]*name\s*=\s*["']?robots\b""", re.I)
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.I)
_HTML: dict[str, Any] = {"text/html": {}}


def with_robots_meta(html: str) -> str:
    """``html`` with ``<meta name="robots" content="noindex, nofollow">`` first in its head,
    unless it has a robots meta element already (or at the very start, if it has no head)."""
    if _ROBOTS_META.search(html):
        return html
    meta = f'<meta name="robots" content="{NOINDEX}">'
    head = _HEAD.search(html)
    if head is None:
        return meta + "\n" + html
    return f"{html[: head.end()]}\n{meta}{html[head.end() :]}"


def digest_page_router(runtime: Runtime) -> APIRouter:
    """The route of the "View in browser" page on ``runtime``'s settings and database."""
    settings, engine = runtime.settings, runtime.engine

    def digest_page(token: str) -> Response:
        """The digest the token names, as its mail showed it; 404 for any other token."""
        with read_scope(engine) as session:
            found = link_target(session, runtime.link_secret, "digest", token)
        if found is None:
            raise HTTPException(status_code=404)
        subscriber, key = found
        if key is None or subscriber.id is None or unsubscribed_themselves(subscriber):
            raise HTTPException(status_code=404)
        digest = stored_digest(settings, engine, subscriber.id, key, runtime=runtime)
        if digest is None:
            raise HTTPException(status_code=404)
        # The page is the browser view itself: no link to it.
        html = render_digest(
            dataclasses.replace(digest, view_url=None),
            templates_dir=settings.templates_dir,
            options=mail_options(settings),
        ).html
        return HTMLResponse(with_robots_meta(html).encode("utf-8", "replace"), headers=PAGE_HEADERS)

    router = APIRouter()
    router.add_api_route(
        "/digest/{token}",
        digest_page,
        methods=["GET"],
        response_class=HTMLResponse,
        responses={
            200: {"description": "The digest as it was mailed", "content": _HTML},
            404: {"description": "No such digest for this link", "content": _HTML},
        },
    )
    return router
