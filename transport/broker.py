"""The broker: one thread that owns the daemon's ROUTER sockets.

ZeroMQ sockets belong to one thread each, so every send goes through this thread: other
threads put (socket, identity, message) on the outbox and wake the poller through a pipe.
Incoming frames are decoded here with the bounded codec; a frame that does not decode, has
the wrong shape or the wrong version is dropped and counted and never stops the loop.

Who sent a frame is decided here, before any handler sees it, from what the socket itself
proves (a `Peer`):
- a CURVE endpoint (`curve_secret` set) passes on the client's public key as the ZAP
  handler vouched for it (the frame's User-Id property); a frame without one is dropped,
  so a handshake that was let through without authentication (no ZAP handler running)
  still gets nothing in;
- an in-process endpoint (`in_process`, inproc:// only: unreachable from outside this
  process) marks its peers IN_PROCESS;
- a token endpoint (`token` set) takes [token, payload] and compares the token frame in
  constant time before the payload is decoded; a peer without it is dropped and counted
  and told `refused`, and its payload is never looked at.
A message is read frame by frame and at most MAX_PARTS frames are kept, so a peer cannot
make the broker hold a multipart message of any size either.
"""

from __future__ import annotations

import hmac
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from ..exceptions import ProtocolError
from .codec import MAX_FRAME, SUPPORTED_VERSIONS, message, pack, unpack
from .scheduler import IN_PROCESS
from .wake import WakePipe

__all__ = ["Broker", "Endpoint", "Peer"]

log = logging.getLogger("crewctl.broker")

MAX_PARTS = 3  # identity, [token,] payload


@dataclass(frozen=True)
class Peer:
    """Who sent a frame: where it came in, its connection, and the key the socket proved."""

    endpoint: str
    identity: bytes
    key: str | None = None  # z85 CURVE public key, IN_PROCESS, or None (the endpoint proves nothing)


Handler = Callable[[Peer, dict[str, Any]], None]


@dataclass
class Endpoint:
    """One ROUTER the broker binds: where, how it is secured, and who handles its messages."""

    name: str
    bind: str
    handler: Handler
    max_frame: int = MAX_FRAME
    curve_secret: bytes | None = None  # set: CURVE server; clients need an allowed key
    curve_public: bytes | None = None
    in_process: bool = False  # inproc:// for the daemon's own hosts
    token: bytes | None = None  # set: every message is [token, payload]
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

    def drop_reasons(self) -> dict[str, dict[str, int]]:
        return {name: dict(e.reasons) for name, e in self.endpoints.items()}

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
            if e.in_process and not e.bind.startswith("inproc://"):
                raise ValueError(f"endpoint {e.name}: an in-process endpoint binds inproc:// only, not {e.bind}")
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
                parts = self._recv_parts(sock)
            except zmq.Again:
                return
            if parts is None:
                self._drop(e, "wrong number of frames")
                continue
            identity, frames = parts[0].bytes, parts[1:]
            if e.token is not None:
                if len(frames) == 1:
                    self._refuse_token(e, identity, "no control token")
                    continue
                if len(frames) != 2:
                    self._drop(e, "wrong number of frames")
                    continue
                if not hmac.compare_digest(frames[0].bytes, e.token):
                    self._refuse_token(e, identity, "bad control token")
                    continue
                frames = frames[1:]
            if len(frames) != 1:
                self._drop(e, "wrong number of frames")
                continue
            peer = self._peer(e, identity, frames[0])
            if peer is None:
                self._drop(e, "no authenticated CURVE key")
                continue
            try:
                msg = unpack(frames[0].bytes, max_size=e.max_frame, check_version=False)
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
                e.handler(peer, msg)
            except ProtocolError as exc:
                self._drop(e, exc.message)
            except Exception:  # a handler bug must not take the broker down
                log.exception("handler for %s failed", e.name)
                self._drop(e, "handler error")

    @staticmethod
    def _recv_parts(sock: zmq.Socket) -> list[zmq.Frame] | None:
        """One whole message, frame by frame, keeping at most MAX_PARTS frames; None (the
        rest read and let go) if it has more. Raises zmq.Again when nothing is waiting."""
        parts: list[zmq.Frame] = []
        too_many = False
        while True:
            # A message arrives whole, so after its first frame the others are already here.
            frame = sock.recv(flags=zmq.NOBLOCK, copy=False)
            if len(parts) < MAX_PARTS:
                parts.append(frame)
            else:
                too_many = True
            if not frame.more:
                return None if too_many else parts

    @staticmethod
    def _peer(e: Endpoint, identity: bytes, frame: zmq.Frame) -> Peer | None:
        if e.in_process:
            return Peer(e.name, identity, IN_PROCESS)
        if e.curve_secret is None:
            return Peer(e.name, identity)
        try:
            key = frame.get("User-Id")
        except zmq.ZMQError:
            key = None
        return Peer(e.name, identity, key) if key else None

    def _refuse_token(self, e: Endpoint, identity: bytes, reason: str) -> None:
        self._drop(e, reason)
        self.send(e.name, identity, message("refused", reason=f"{reason}: read it from this supervisor's daemon.json"))

    def _drop(self, e: Endpoint, reason: str) -> None:
        e.dropped += 1
        e.reasons[reason] = e.reasons.get(reason, 0) + 1
        log.warning("dropped a frame on %s: %s", e.name, reason)

    def _close(self) -> None:
        for sock in self._sockets.values():
            sock.close(0)
        self._sockets.clear()
        self._waker.close()
