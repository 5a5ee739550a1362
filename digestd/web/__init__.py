"""The web application: sign-up with double opt-in, the preference page, unsubscribing, a
mailed digest as a web page, the topic feeds and the health check, on FastAPI under uvicorn.

``create_app`` builds the application (pages.py: the pages; digest_page.py: "View in
browser"; feeds_http.py: the feeds; feed_rebuild.py: missing feeds rebuilt in the background;
health.py: the health check; security.py: headers, CSRF, rate limit; mails.py: the sign-up
mails; protocol.py: error pages, trailing-slash redirects, HEAD). ``serve`` runs it until
stopped; ``web_server`` gives the uvicorn server to run and stop from another thread.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from digestd import __version__
from digestd.config import Settings
from digestd.errors import DigestError
from digestd.jobs import run_feeds
from digestd.runtime import Runtime, utc_now
from digestd.web.digest_page import digest_page_router
from digestd.web.feed_rebuild import FeedRebuild
from digestd.web.feeds_http import feeds_router
from digestd.web.health import health_router
from digestd.web.pages import WebPages
from digestd.web.protocol import HeadAsGet, install_error_pages
from digestd.web.security import SecurityHeaders
from digestd.web.templating import PageRenderer, static_dir

__all__ = ["create_app", "serve", "web_server"]

log = logging.getLogger("digestd.web")


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] = utc_now,
    runtime: Runtime | None = None,
) -> FastAPI:
    """The web application for ``settings`` on ``engine``; ``clock`` gives the current time
    (sign-up windows and the rate limit follow it). It runs on ``runtime`` (the daemon's,
    when it serves the application) or on one of its own, made here with ``clock``."""
    runtime = runtime if runtime is not None else Runtime(settings, engine, clock=clock)
    app = FastAPI(
        title=f"{settings.digest.site_name} web application",
        version=__version__,
        description="Sign-up, preferences, unsubscribing and topic feeds of digestd.",
        # The interactive documentation pages load scripts from elsewhere, which the
        # Content-Security-Policy forbids; /openapi.json describes every route.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(WebPages(runtime).router())
    app.include_router(digest_page_router(runtime))
    # The app owns the background rebuild of missing feed files (one run at a time).
    app.state.feed_rebuild = FeedRebuild(partial(run_feeds, settings, engine, runtime=runtime))
    app.include_router(
        feeds_router(
            settings,
            engine,
            clock=runtime.clock,
            runtime=runtime,
            rebuild=app.state.feed_rebuild,
        )
    )
    app.include_router(health_router(engine, settings))
    app.mount("/static", StaticFiles(directory=static_dir(settings.templates_dir)), name="static")
    install_error_pages(app, PageRenderer(settings), base_url=settings.feeds.base_url)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet, router=app.router)
    return app


def web_server(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] = utc_now,
    runtime: Runtime | None = None,
) -> uvicorn.Server:
    """A uvicorn server for the application on ``[web] host`` and ``port``: ``run()`` serves
    until ``should_exit`` is set (from another thread) or, in the main thread, a signal."""
    config = uvicorn.Config(
        create_app(settings, engine, clock=clock, runtime=runtime),
        host=settings.web.host,
        port=settings.web.port,
        # Behind a reverse proxy on this machine, uvicorn takes the client's address and
        # scheme from its X-Forwarded-* headers; otherwise they are ignored.
        proxy_headers=settings.web.proxy_headers,
        forwarded_allow_ips="127.0.0.1,::1",
        # Access logs would write every signed link into the log.
        access_log=False,
        server_header=False,
        lifespan="off",
        log_config=None,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, engine: Engine) -> None:
    """Serve the web application until SIGTERM or Ctrl-C, then answer the requests in flight
    and return (a clean exit, for service managers). Raises DigestError when it cannot
    listen."""
    server = web_server(settings, engine)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    # uvicorn in the main thread would re-raise the signal after shutting down; in a thread it
    # leaves signals to us.
    thread = threading.Thread(target=server.run, name="digestd-web")
    thread.start()
    while thread.is_alive() and not stop.wait(0.2):
        pass
    server.should_exit = True
    thread.join()
    if not server.started:
        raise DigestError(
            f"cannot serve on {settings.web.host}:{settings.web.port}",
            hint="check [web] host and port (is another program using the port?)",
        )
