"""Agent hosts for tests: real `crewctl worker` processes, and raw sockets for forged frames.

    with Supervisor(tmp_path, args=["--heartbeat", "0.2", "--local-workers", "0"]) as sup:
        with WorkerProcess(sup, "alpha", "--lanes", "gpu") as alpha:   # with key "alpha", allowed
            wait_for_host(sup, "alpha")
            ...
            alpha.kill()                      # SIGKILL, as a crashed machine would

    with RawPeer(sup.info()["listen"], **peer_keys(sup, "x")) as peer:   # a DEALER that speaks
        peer.send(b"\\x00garbage")                                        # whatever it is told
        peer.send_msg({"v": 1, "type": "hello", ...})
        reply = peer.recv(timeout=2)

The agents endpoint takes only allowed CURVE keys, so a worker or peer gets a key pair of
its own (made once per key name under the test's root, allowed in the supervisor's home)
unless a test says otherwise (`key=None`: no key at all).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..transport import keys
from ..transport.codec import pack, unpack
from .process import Supervisor, crewctl_binary, read_log, wait_until

__all__ = ["RawPeer", "WorkerProcess", "host_names", "peer_keys", "status", "worker_key", "wait_for_host", "wait_host_gone"]


def worker_key(sup: Supervisor, name: str, *, allow: bool = True) -> str:
    """The secret key file of test key `name` (made on first use), allowed on `sup` if asked."""
    directory = os.path.join(sup.root, "keys")
    public = os.path.join(directory, name + ".key")
    if not os.path.exists(public):
        keys.new_key_pair(name, directory)
    if allow:
        keys.allow(sup.home, public)
    return public + "_secret"


def peer_keys(sup: Supervisor, name: str, *, allow: bool = True) -> dict[str, Any]:
    """RawPeer's keyword arguments for a CURVE peer with test key `name`."""
    return {"client_keys": keys.load_secret(worker_key(sup, name, allow=allow)), "server_key": keys.server_keys(sup.home)[0]}


def status(sup: Supervisor) -> dict[str, Any]:
    return sup.cli("status", "--json").json()


def host_names(sup: Supervisor) -> list[str]:
    return [h["name"] for h in status(sup)["hosts"]]


def wait_for_host(sup: Supervisor, name: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
    """Wait until `crewctl status` lists host `name` (and its fields equal `match`)."""

    def found():
        for h in status(sup)["hosts"]:
            if h["name"] == name and all(h.get(k) == v for k, v in match.items()):
                return h
        return None

    return wait_until(found, timeout=timeout, interval=0.05, message=f"host {name} in `crewctl status`")


def wait_host_gone(sup: Supervisor, name: str, timeout: float = 20) -> None:
    wait_until(lambda: name not in host_names(sup), timeout=timeout, interval=0.05, message=f"host {name} to leave")


class WorkerProcess:
    """A `crewctl worker` process attached to a Supervisor's agents endpoint."""

    def __init__(
        self,
        sup: Supervisor,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        heartbeat: float = 0.2,
        connect: str | None = None,
        key: str | None = "",
    ) -> None:
        """`key`: the test key it attaches with ("" = its name; None = none; ignored if args has --key)."""
        self.sup = sup
        self.name = name
        self.args = list(args)
        self.key = name if key == "" else key
        self.env = dict(env or {})
        self.heartbeat = heartbeat
        self.connect = connect
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(sup.root, f"worker-{name}.log")

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "WorkerProcess":
        env = dict(os.environ)
        env["CREWCTL_HOME"] = self.sup.home
        env.update(self.sup.env)
        env.update(self.env)
        argv = [crewctl_binary(), "worker", "--name", self.name, "--heartbeat", str(self.heartbeat), *self.args]
        if self.key is not None and "--key" not in self.args:
            argv += ["--key", worker_key(self.sup, self.key)]
        if self.connect:
            argv += ["--connect", self.connect]
        self._log = open(self.log_path, "ab")
        # Its own process group: a SIGKILL of the worker leaves its brain processes, as a
        # crashed machine's would be gone; kill_group() takes those too.
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker process alone."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return read_log(self.log_path)


class RawPeer:
    """A bare DEALER on an endpoint: sends any bytes, for fuzzing and forging."""

    def __init__(self, endpoint: str, *, client_keys: tuple[bytes, bytes] | None = None, server_key: bytes | None = None) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if client_keys is not None:
            self.sock.curve_publickey, self.sock.curve_secretkey = client_keys
            self.sock.curve_serverkey = server_key
        # Watched from before the connect, so no disconnect goes unseen.
        self._monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.disconnects = 0
        self.sock.connect(endpoint)

    def wait_disconnected(self, timeout: float = 10.0) -> bool:
        """True once the other side has closed this peer's connection (e.g. for a frame
        past its size cap), False at the deadline."""
        if self.disconnects:
            return True
        if self._monitor.poll(int(timeout * 1000)):
            recv_monitor_message(self._monitor)
            self.disconnects += 1
        return self.disconnects > 0

    def __enter__(self) -> "RawPeer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def send_msg(self, msg: dict[str, Any]) -> None:
        self.sock.send(pack(msg))

    def offer_msg(self, msg: dict[str, Any]) -> bool:
        """Send if a connection will take it; False if none will. For a peer the other side
        refuses at the handshake: between its reconnects it has no connection to queue on,
        where send_msg would wait forever."""
        try:
            self.sock.send(pack(msg), zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def recv(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The next decodable message, or None at the deadline."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return unpack(self.sock.recv(), check_version=False)

    def recv_all(self, timeout: float = 0.5) -> list[dict[str, Any]]:
        out = []
        while (msg := self.recv(timeout)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.sock.disable_monitor()
        self._monitor.close(0)
        self.sock.close(0)
