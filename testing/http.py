"""A real HTTP server on loopback that answers with scripted replies and records requests.

For testing code that talks HTTP (the API brains, anything else) without mocking the client:
the code under test opens real sockets, sends real requests and reads real (chunked,
streamed, slow, cut-short) responses. Stdlib only: http.server's ThreadingHTTPServer on
127.0.0.1, port 0, served from a daemon thread.

    from crewctl.testing.http import LoopbackServer, Reply

    with LoopbackServer() as server:
        server.add(Reply.json({"error": "busy"}, status=429, headers={"Retry-After": "1"}))
        server.add(Reply.sse(['{"n": 1}', "[DONE]"]))
        ...                                  # point the client at server.url
        assert server.requests[1].json()["stream"] is True

Replies are served in the order they were added, one per request (`add`); when the queue is
empty the `default` reply answers (a 500 saying so, unless you set one). `route(method,
path, reply)` answers every matching request instead, before the queue; the reply may be a
function of the RecordedRequest, which is how a test forwards to another server.

A reply can be slow (`delay` before the status line, `chunk_delay` between body chunks),
streamed (chunked transfer encoding, flushed chunk by chunk), cut short (`cut_after`: close
the connection after that many chunks, without the terminating chunk) or refused outright
(`Reply.closed()`: close without answering). Delays end early when the server closes, so
a test never waits for a slow reply it no longer wants.
"""

from __future__ import annotations

import json as _json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

__all__ = ["LoopbackServer", "RecordedRequest", "Reply", "free_port"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str  # with the query string, as sent
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() when the request was read

    def json(self) -> Any:
        return _json.loads(self.body.decode("utf-8"))

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class Reply:
    """A scripted response. Either `body` (sent with Content-Length) or `chunks` (sent with
    chunked transfer encoding, each flushed on its own)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Sequence[bytes] | None = None
    delay: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds before each chunk after the first
    cut_after: int | None = None  # close the connection after this many chunks
    hang_up: bool = False  # close the connection without answering

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None, **kw: Any) -> "Reply":
        return cls(status=status, headers={"Content-Type": "application/json", **(headers or {})},
                   body=_json.dumps(data).encode(), **kw)

    @classmethod
    def text(cls, text: str | bytes, status: int = 200, headers: Mapping[str, str] | None = None,
             content_type: str = "text/plain; charset=utf-8", **kw: Any) -> "Reply":
        body = text.encode() if isinstance(text, str) else text
        return cls(status=status, headers={"Content-Type": content_type, **(headers or {})}, body=body, **kw)

    @classmethod
    def sse(cls, events: Iterable[str | tuple[str, str]], status: int = 200,
            headers: Mapping[str, str] | None = None, **kw: Any) -> "Reply":
        """A text/event-stream reply, one chunk per event: each item is the data of an event,
        or (event name, data)."""
        chunks = []
        for item in events:
            if isinstance(item, tuple):
                name, data = item
                chunks.append(f"event: {name}\ndata: {data}\n\n".encode())
            else:
                chunks.append(f"data: {item}\n\n".encode())
        return cls.stream(chunks, status=status, headers=headers, **kw)

    @classmethod
    def stream(cls, chunks: Iterable[bytes | str], status: int = 200, headers: Mapping[str, str] | None = None,
               content_type: str = "text/event-stream; charset=utf-8", **kw: Any) -> "Reply":
        """Raw body chunks (for example a recorded event stream, split where you like)."""
        raw = [c.encode() if isinstance(c, str) else c for c in chunks]
        return cls(status=status, headers={"Content-Type": content_type, "Cache-Control": "no-cache", **(headers or {})},
                   chunks=raw, **kw)

    @classmethod
    def closed(cls, delay: float = 0.0) -> "Reply":
        """Close the connection without sending anything (after `delay`)."""
        return cls(hang_up=True, delay=delay)


Responder = Union[Reply, Callable[[RecordedRequest], Reply]]


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving scripted replies. Use as a context
    manager, or call start() and close()."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply.json({"error": {"message": "no scripted reply left"}}, status=500)
        self.requests: list[RecordedRequest] = []
        self._queue: list[Responder] = []
        self._routes: list[tuple[str, str, Responder]] = []
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "LoopbackServer":
        httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- scripting ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the server first"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def add(self, *replies: Responder) -> "LoopbackServer":
        """Queue replies: the next requests (not answered by a route) get them in order."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def route(self, method: str, path: str, reply: Responder) -> "LoopbackServer":
        """Answer every `method` request whose path (without query) equals `path`."""
        with self._lock:
            self._routes.append((method.upper(), path, reply))
        return self

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests have arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.requests)} in {timeout:g}s")
                self._lock.wait(left)
            return list(self.requests)

    # -- used by the handler --------------------------------------------------------------

    def _record_and_pick(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            path = request.path.split("?", 1)[0]
            responder: Responder | None = None
            for method, route_path, reply in self._routes:
                if method == request.method and route_path == path:
                    responder = reply
                    break
            if responder is None:
                responder = self._queue.pop(0) if self._queue else self.default
        return responder(request) if callable(responder) else responder

    def _sleep(self, seconds: float) -> bool:
        """Wait; False if the server is closing (the reply should be abandoned)."""
        return not (seconds > 0 and self._closing.wait(seconds)) and not self._closing.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a cancelled turn, an abandoned keep-alive connection) is
        # normal traffic for a test server, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
            reply = server._record_and_pick(recorded)
            if not server._sleep(reply.delay) or reply.hang_up:
                self.close_connection = True
                return
            try:
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True  # the client went away: that is its right

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            names = {k.lower() for k in reply.headers}
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunks is None:
                if "content-length" not in names:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                self.wfile.flush()
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for i, chunk in enumerate(reply.chunks):
                if reply.cut_after is not None and i >= reply.cut_after:
                    self.close_connection = True
                    return
                if i and not server._sleep(reply.chunk_delay):
                    self.close_connection = True
                    return
                if chunk:
                    self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
            if reply.cut_after is not None and reply.cut_after <= len(reply.chunks):
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler


def free_port() -> int:
    """A loopback port that nothing listens on (at the moment of asking): connecting to it
    is refused, which is how to test "the server is down"."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
