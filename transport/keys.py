"""CURVE keys for the agents endpoint (zmq.auth certificates).

    $CREWCTL_HOME/keys/                    0700
    $CREWCTL_HOME/keys/server.key          the daemon's public certificate: give it to workers
    $CREWCTL_HOME/keys/server.key_secret   the daemon's secret certificate (0600): never leaves the home
    $CREWCTL_HOME/keys/allowed/*.key       public certificates of the workers allowed to attach

`crewctl run` makes the server pair on its first start (or `crewctl keys init`), `crewctl
keys new NAME` a worker pair (wherever the worker runs; `--allow` allows it here too),
`crewctl keys allow FILE` copies a worker's *public* certificate into the allowed folder.
The daemon's ZAP handler reads the allowed folder at every handshake, so a key allowed
while the daemon runs works for the next connection, with no restart.

The agents endpoint is always CURVE, loopback included: the handshake itself refuses an
unknown key, so its frames never reach the broker; it gets no task, no goal data, and
nothing it sends is recorded. The daemon's in-process hosts need no key: they reach the
broker over inproc://, which nothing outside the daemon's process can connect to.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..exceptions import UsageError
from ..home import PRIVATE_FILE, private_dir, private_file

__all__ = [
    "allow",
    "allowed_dir",
    "allowed_keys",
    "has_server_keys",
    "init_server_keys",
    "keys_dir",
    "load_public",
    "load_secret",
    "new_key_pair",
    "secure_keys_dir",
    "server_key_path",
    "server_keys",
    "start_authenticator",
]

log = logging.getLogger("crewctl.keys")

SERVER = "server"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def keys_dir(home: str) -> str:
    return os.path.join(home, "keys")


def allowed_dir(home: str) -> str:
    return os.path.join(keys_dir(home), "allowed")


def _server_paths(home: str) -> tuple[str, str]:
    base = os.path.join(keys_dir(home), SERVER)
    return base + ".key", base + ".key_secret"


def server_key_path(home: str) -> str:
    """The daemon's public certificate: what a worker passes as --server-key."""
    return _server_paths(home)[0]


def secure_keys_dir(home: str) -> None:
    """Make (or tighten) the keys folders (0700) and the server's secret file (0600)."""
    private_dir(keys_dir(home))
    private_dir(allowed_dir(home))
    _, secret_path = _server_paths(home)
    if os.path.exists(secret_path):
        private_file(secret_path)


def has_server_keys(home: str) -> bool:
    return all(os.path.isfile(p) for p in _server_paths(home))


def server_keys(home: str) -> tuple[bytes, bytes]:
    """The daemon's (public, secret) key, z85-encoded. Raises UsageError if missing or bad."""
    _, secret_path = _server_paths(home)
    public, secret = load_secret(secret_path)
    return public, secret


def init_server_keys(home: str, *, force: bool = False) -> tuple[str, str]:
    """Make the daemon's key pair; return (public file, secret file). Never overwrites unless forced."""
    public_path, secret_path = _server_paths(home)
    if has_server_keys(home) and not force:
        raise UsageError(f"the supervisor's keys already exist in {keys_dir(home)} (pass --force to replace them)")
    secure_keys_dir(home)
    _write_pair(keys_dir(home), SERVER)
    return public_path, secret_path


def new_key_pair(name: str, out_dir: str, *, force: bool = False) -> tuple[str, str]:
    """Make a worker's key pair NAME.key / NAME.key_secret in out_dir; return the two paths."""
    if not _NAME_RE.match(name) or name == SERVER:
        raise UsageError(f"a key name is letters, digits, '.', '_' or '-' (and not {SERVER!r}), not {name!r}")
    os.makedirs(out_dir, exist_ok=True)
    public_path = os.path.join(out_dir, name + ".key")
    secret_path = public_path + "_secret"
    if (os.path.exists(public_path) or os.path.exists(secret_path)) and not force:
        raise UsageError(f"{public_path} already exists (pass --force to replace it)")
    _write_pair(out_dir, name)
    return public_path, secret_path


def _write_pair(directory: str, name: str) -> None:
    for suffix in (".key", ".key_secret"):
        try:
            os.remove(os.path.join(directory, name + suffix))
        except FileNotFoundError:
            pass
    old = os.umask(0o077)
    try:
        public_path, secret_path = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret_path, PRIVATE_FILE)
    os.chmod(public_path, 0o644)


def load_public(path: str) -> bytes:
    """The public key in a certificate file (public or secret). Raises UsageError."""
    public, _ = _load(path)
    if not public:
        raise UsageError(f"{path} has no public key")
    return public


def load_secret(path: str) -> tuple[bytes, bytes]:
    """(public, secret) from a secret certificate file. Raises UsageError."""
    public, secret = _load(path)
    if not public or not secret:
        raise UsageError(f"{path} is not a secret key file (it has no secret-key); use the NAME.key_secret file")
    return public, secret


def _load(path: str) -> tuple[bytes | None, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read key file {path}: {exc}") from None
    for key in (public, secret):
        if key is not None and len(key) != 40:
            raise UsageError(f"{path} does not hold a CURVE key (expected 40 z85 characters)")
    return public, secret


def allow(home: str, path: str) -> str:
    """Authorise the worker whose public certificate is at `path`; return where it was put."""
    public, secret = _load(path)
    if secret is not None:
        raise UsageError(
            f"{path} is a secret key file: allow the worker's public file (NAME.key), "
            "and keep the secret one on the worker"
        )
    if not public:
        raise UsageError(f"{path} has no public key")
    secure_keys_dir(home)
    target_dir = allowed_dir(home)
    if public in allowed_keys(home):
        for entry in sorted(os.listdir(target_dir)):
            full = os.path.join(target_dir, entry)
            try:
                if entry.endswith(".key") and load_public(full) == public:
                    return full
            except UsageError:
                continue
    stem = os.path.basename(path)
    stem = stem[: -len(".key")] if stem.endswith(".key") else stem
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "worker"
    target = os.path.join(target_dir, stem + ".key")
    n = 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(target_dir, f"{stem}-{n}.key")
    tmp = target + ".tmp"
    shutil.copyfile(path, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)  # the ZAP handler never reads a half-written file (it reads *.key)
    return target


def allowed_keys(home: str) -> set[bytes]:
    """z85 public keys in the allowed folder. Files that do not parse are skipped (and logged)."""
    directory = allowed_dir(home)
    try:
        entries = os.listdir(directory)
    except OSError:
        return set()
    keys = set()
    for entry in entries:
        if not entry.endswith(".key"):
            continue
        try:
            public, _ = zmq.auth.load_certificate(os.path.join(directory, entry))
        except (OSError, ValueError) as exc:
            log.warning("skipping allowed key %s: %s", entry, exc)
            continue
        if public:
            keys.add(public)
    return keys


class _AllowedFolder:
    """ZAP credentials provider: the allowed folder, read at every handshake."""

    def __init__(self, home: str) -> None:
        self.home = home

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in allowed_keys(self.home)
        if not allowed:
            log.warning("refused a CURVE client with unknown key %s (allow it with `crewctl keys allow FILE`)", key.decode("ascii", "replace"))
        return allowed


class _Authenticator:
    def __init__(self, auth: ThreadAuthenticator) -> None:
        self._auth = auth

    def stop(self) -> None:
        self._auth.stop()


ZAP_REBIND_WAIT = 5.0  # seconds


def start_authenticator(home: str, context: zmq.Context | None = None) -> Any:
    """Start the ZAP handler for `context` (default: the process-wide one). Returns it (.stop())."""
    deadline = time.monotonic() + ZAP_REBIND_WAIT
    while True:
        auth = ThreadAuthenticator(context or zmq.Context.instance(), log=logging.getLogger("crewctl.zap"))
        # Configured before it starts: no handshake is ever judged without the allowed folder.
        auth.configure_curve_callback(domain="*", credentials_provider=_AllowedFolder(home))
        try:
            auth.start()
            return _Authenticator(auth)
        except zmq.ZMQError as exc:
            # A handler stopped a moment ago in this process (a daemon run before this one)
            # still holds the ZAP address until ZeroMQ's reaper thread has closed its socket.
            if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # poll: the release is asynchronous and has no event to wait on
