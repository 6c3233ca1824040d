"""A throwaway PostgreSQL server for tests: initdb in a temp dir, listen on loopback.

    with TempPostgres() as pg:
        store = open_store(pg.url("crew_test"))

Uses the server binaries from PATH or /usr/lib/postgresql/*/bin. As root (CI), the
cluster runs as the `postgres` user, since PostgreSQL refuses to run as root. Set
CREWCTL_TEST_POSTGRES_URL to use an existing server instead (a URL with a database the
tests may create databases next to).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

__all__ = ["PostgresUnavailable", "TempPostgres", "find_pg_bin"]


class PostgresUnavailable(RuntimeError):
    pass


def find_pg_bin() -> str | None:
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return os.path.dirname(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    def __init__(self) -> None:
        self.external = os.environ.get("CREWCTL_TEST_POSTGRES_URL")
        self.dir: str | None = None
        self.port: int | None = None
        self.user = "postgres"
        self._run_as: dict[str, Any] = {}

    def __enter__(self) -> "TempPostgres":
        if self.external:
            return self
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise PostgresUnavailable("PostgreSQL server binaries not found (install the postgresql package)")
        self.bin = bin_dir
        self.dir = tempfile.mkdtemp(prefix="crewctl-pg-")
        data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no postgres user to run the server as") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._run([os.path.join(bin_dir, "initdb"), "-D", data, "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.port = _free_port()
        log = os.path.join(self.dir, "server.log")
        self._run(
            [
                os.path.join(bin_dir, "pg_ctl"),
                "-D",
                data,
                "-l",
                log,
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=on -c max_connections=300",
                "start",
            ]
        )
        return self

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.dir, **self._run_as)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{os.path.basename(argv[0])} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def url(self, database: str) -> str:
        """A URL for `database`, created empty (dropped first if it exists)."""
        import psycopg2

        admin = self.external or f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        conn = psycopg2.connect(admin)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{database}"')
        finally:
            conn.close()
        base = admin.rsplit("/", 1)[0]
        return f"{base}/{database}"

    def __exit__(self, *exc: Any) -> None:
        if self.external or self.dir is None:
            return
        data = os.path.join(self.dir, "data")
        try:
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"])
        except PostgresUnavailable:
            pass
        for _ in range(50):
            if not os.path.exists(os.path.join(data, "postmaster.pid")):
                break
            time.sleep(0.1)  # poll: pg_ctl -w already waited; this only covers a slow unlink
        shutil.rmtree(self.dir, ignore_errors=True)
