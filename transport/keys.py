"""CURVE keys for the agents endpoint (zmq.auth certificates).

    $CREWCTL_HOME/keys/server.key          the daemon's public certificate: give it to workers
    $CREWCTL_HOME/keys/server.key_secret   the daemon's secret certificate: never leaves the home
    $CREWCTL_HOME/keys/allowed/*.key       public certificates of the workers allowed to attach

`crewctl keys init` writes the server pair, `crewctl keys new NAME` a worker pair (wherever
the worker runs), `crewctl keys allow FILE` copies a worker's *public* certificate into the
allowed folder. The daemon's ZAP handler reads the allowed folder at every handshake, so a
key allowed while the daemon runs works for the next connection, with no restart.

With CURVE on, the handshake itself refuses an unknown key: its frames never reach the
broker, so it gets no task, no goal data, and nothing it sends is recorded. The in-process
(local) hosts of the daemon use a key pair made in memory at start and allowed in memory.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..exceptions import UsageError

__all__ = [
    "allow",
    "allowed_dir",
    "allowed_keys",
    "ephemeral_client_keys",
    "has_server_keys",
    "init_server_keys",
    "keys_dir",
    "load_public",
    "load_secret",
    "new_key_pair",
    "server_keys",
    "start_authenticator",
]

log = logging.getLogger("crewctl.keys")

SERVER = "server"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Keys allowed in memory, for this process's own local hosts (z85 public keys).
_ephemeral: set[bytes] = set()
_ephemeral_lock = threading.Lock()


def keys_dir(home: str) -> str:
    return os.path.join(home, "keys")


def allowed_dir(home: str) -> str:
    return os.path.join(keys_dir(home), "allowed")


def _server_paths(home: str) -> tuple[str, str]:
    base = os.path.join(keys_dir(home), SERVER)
    return base + ".key", base + ".key_secret"


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
    os.makedirs(allowed_dir(home), mode=0o700, exist_ok=True)
    os.chmod(keys_dir(home), 0o700)
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
    os.chmod(secret_path, 0o600)
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
    target_dir = allowed_dir(home)
    os.makedirs(target_dir, mode=0o700, exist_ok=True)
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


def ephemeral_client_keys() -> tuple[bytes, bytes]:
    """A fresh (public, secret) pair allowed by this process's authenticators, in memory only."""
    public, secret = zmq.curve_keypair()
    with _ephemeral_lock:
        _ephemeral.add(public)
    return public, secret


class _AllowedFolder:
    """ZAP credentials provider: the allowed folder, read at every handshake."""

    def __init__(self, home: str) -> None:
        self.home = home

    def callback(self, domain: str, key: bytes) -> bool:
        with _ephemeral_lock:
            if key in _ephemeral:
                return True
        allowed = key in allowed_keys(self.home)
        if not allowed:
            log.warning("refused a CURVE client with unknown key %s (allow it with `crewctl keys allow FILE`)", key.decode("ascii", "replace"))
        return allowed


class _Authenticator:
    def __init__(self, auth: ThreadAuthenticator) -> None:
        self._auth = auth

    def stop(self) -> None:
        self._auth.stop()


def start_authenticator(home: str, context: zmq.Context | None = None) -> Any:
    """Start the ZAP handler for `context` (default: the process-wide one). Returns it (.stop())."""
    auth = ThreadAuthenticator(context or zmq.Context.instance(), log=logging.getLogger("crewctl.zap"))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowedFolder(home))
    return _Authenticator(auth)
