"""Reaching the database around the store, for tests that corrupt or inspect it."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Sequence

__all__ = ["raw_sql"]


def raw_sql(db_url: str | None, home: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Run one statement directly: on `$home/crew.db` when `db_url` is None, else on PostgreSQL
    (`?` placeholders either way). Returns the rows, or [] for a statement without any."""
    if db_url is None:
        conn = sqlite3.connect(os.path.join(home, "crew.db"))
        try:
            with conn:
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg2

    conn = psycopg2.connect(db_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
