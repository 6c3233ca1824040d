"""The broker: one thread that owns the daemon's ROUTER sockets.

ZeroMQ sockets belong to one thread each, so every send goes through this thread: other
threads put (socket, identity, message) on the outbox and wake the poller through a pipe.
Incoming frames are decoded here with the bounded codec; a frame that does not decode, has
the wrong shape or the wrong version is dropped and counted and never stops the loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from ..exceptions import ProtocolError
from .codec import MAX_FRAME, SUPPORTED_VERSIONS, message, pack, unpack
from .wake import WakePipe

__all__ = ["Broker", "Endpoint"]

log = logging.getLogger("crewctl.broker")

Handler = Callable[[bytes, dict[str, Any]], None]


@dataclass
class Endpoint:
    """One ROUTER the broker binds: where, how it is secured, and who handles its messages."""

    name: str
    bind: str
    handler: Handler
    max_frame: int = MAX_FRAME
    curve_secret: bytes | None = None  # set: CURVE server; clients need an allowed key
    curve_public: bytes | None = None
    bound: str | None = None
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class Broker(threading.Thread):
    def __init__(self, endpoints: list[Endpoint], context: zmq.Context | None = None) -> None:
        super().__init__(name="crewctl-broker", daemon=True)
        self.endpoints = {e.name: e for e in endpoints}
        self.context = context or zmq.Context.instance()
        self._outbox: queue.SimpleQueue[tuple[str, bytes, bytes]] = queue.SimpleQueue()
        self._waker = WakePipe()
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._sockets: dict[str, zmq.Socket] = {}

    # -- other threads --------------------------------------------------------------------

    def send(self, endpoint: str, identity: bytes, msg: dict[str, Any]) -> None:
        """Thread-safe: queue a message to one peer of an endpoint."""
        self._outbox.put((endpoint, identity, pack(msg)))
        self._wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()

    def dropped(self) -> dict[str, int]:
        return {name: e.dropped for name, e in self.endpoints.items()}

    def _wake(self) -> None:
        self._waker.wake()

    # -- the broker thread ------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._bind_all()
        except BaseException as exc:  # reported to the starter, which exits with a clear line
            self.failed = exc
            self.ready.set()
            self._close()
            return
        self.ready.set()
        poller = zmq.Poller()
        by_socket = {}
        for name, sock in self._sockets.items():
            poller.register(sock, zmq.POLLIN)
            by_socket[sock] = self.endpoints[name]
        poller.register(self._waker.fileno(), zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                for item, _ in poller.poll(1000):
                    if item == self._waker.fileno():
                        self._waker.drain()
                        self._flush_outbox()
                    else:
                        self._receive(item, by_socket[item])
                self._flush_outbox()
        finally:
            self._close()

    def _bind_all(self) -> None:
        for name, e in self.endpoints.items():
            sock = self.context.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, e.max_frame)
            sock.setsockopt(zmq.RCVHWM, 10_000)
            sock.setsockopt(zmq.SNDHWM, 10_000)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished peer fails loudly
            if e.curve_secret is not None:
                sock.curve_server = True
                sock.curve_secretkey = e.curve_secret
                sock.curve_publickey = e.curve_public
            sock.bind(e.bind)
            e.bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._sockets[name] = sock

    def _flush_outbox(self) -> None:
        while True:
            try:
                name, identity, frame = self._outbox.get_nowait()
            except queue.Empty:
                return
            sock = self._sockets.get(name)
            if sock is None:
                continue
            try:
                sock.send_multipart([identity, frame], flags=zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                # The peer is gone or its queue is full: heartbeats and requeues handle it.
                log.debug("send to %r on %s failed: %s", identity, name, exc)

    def _receive(self, sock: zmq.Socket, e: Endpoint) -> None:
        for _ in range(1000):  # bounded batch, so one busy socket cannot starve the other
            try:
                parts = sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(parts) != 2:
                self._drop(e, "wrong number of frames")
                continue
            identity, frame = parts
            try:
                msg = unpack(frame, max_size=e.max_frame, check_version=False)
            except ProtocolError as exc:
                self._drop(e, exc.message)
                continue
            if msg["v"] not in SUPPORTED_VERSIONS:
                self._drop(e, "unsupported version")
                self.send(
                    e.name,
                    identity,
                    message(
                        "refused",
                        reason=f"protocol version {msg['v']} is not spoken here",
                        speaks=list(SUPPORTED_VERSIONS),
                    ),
                )
                continue
            try:
                e.handler(identity, msg)
            except ProtocolError as exc:
                self._drop(e, exc.message)
            except Exception:  # a handler bug must not take the broker down
                log.exception("handler for %s failed", e.name)
                self._drop(e, "handler error")

    def _drop(self, e: Endpoint, reason: str) -> None:
        e.dropped += 1
        e.reasons[reason] = e.reasons.get(reason, 0) + 1
        log.warning("dropped a frame on %s: %s", e.name, reason)

    def _close(self) -> None:
        for sock in self._sockets.values():
            sock.close(0)
        self._sockets.clear()
        self._waker.close()
