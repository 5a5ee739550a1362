"""A real HTTP server on a loopback port that plays scripted answers and records every request
(its headers, when it started and ended, and how many were in flight at once)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = ""  # sent as ETag; a request whose If-None-Match carries it gets a 304
    hang: bool = False  # never answer (until the server stops)
    delay: float = 0.0  # wait this long before answering
    piece_delay: float | None = None  # send the body byte by byte with this pause between
    length: bool = True  # send Content-Length (else the body ends when the connection closes)


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    started: float
    ended: float = 0.0
    status: int = 0


class SourceServer:
    """Serves ``route(path, replies...)``: each request to a path takes the next reply, the
    last one repeating."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.active = 0
        self.max_active = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def route(self, path: str, *replies: Reply) -> str:
        """Script the answers for ``path``; returns its URL."""
        self.routes[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def _next(self, path: str) -> Reply:
        with self._lock:
            replies = self.routes.get(path) or [Reply(404, b"not here")]
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, 0.0)
                with owner._lock:
                    seen.started = time.monotonic()
                    owner.seen.append(seen)
                    owner.active += 1
                    owner.max_active = max(owner.max_active, owner.active)
                try:
                    self._answer(owner._next(self.path), seen)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout, a refused size): what tests expect
                finally:
                    with owner._lock:
                        owner.active -= 1
                        seen.ended = time.monotonic()

            def _answer(self, reply: Reply, seen: Seen) -> None:
                if reply.hang:
                    owner.release.wait(30)
                    return
                if reply.delay and owner.release.wait(reply.delay):
                    return
                status = reply.status
                if reply.etag and self.headers.get("If-None-Match") == reply.etag:
                    status = 304
                seen.status = status
                self.send_response(status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.etag:
                    self.send_header("ETag", reply.etag)
                body = b"" if status == 304 else reply.body
                if reply.length and status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if reply.piece_delay is None:
                    self.wfile.write(body)
                    return
                for index in range(len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    if owner.release.wait(reply.piece_delay):
                        return

        return Handler

    @contextmanager
    def running(self) -> Iterator[SourceServer]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
