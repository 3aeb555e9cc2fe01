#!/usr/bin/env python
"""Before `make run` (and bench, soak, smoke): PostgreSQL and Redis answer, and the database exists.

    python scripts/preflight.py            # check both, create the DATABASE_URL database if missing
    python scripts/preflight.py --drop     # drop the DATABASE_URL database (the smoke test's own)

A service that does not answer is reported in one line naming the variable to fix, never as a
traceback, and the exit code is 1. Every connection has a short timeout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/dpp"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT_SECONDS = 3


def _redacted(url: str) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


def _maintenance_connection(database: dict):
    """A connection to the server's `postgres` database (autocommit: CREATE DATABASE needs it)."""
    import psycopg

    return psycopg.connect(
        dbname="postgres", user=database["USER"] or None, password=database["PASSWORD"] or None,
        host=database["HOST"] or None, port=database["PORT"] or None,
        connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True,
    )


def database_ensure(url: str) -> int:
    import psycopg
    from psycopg import sql

    from dpp.env import parse_database_url

    database = parse_database_url(url)
    name = database["NAME"]
    try:
        connection = _maintenance_connection(database)
    except psycopg.OperationalError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        print(f"PostgreSQL does not answer at DATABASE_URL={_redacted(url)}: {reason}\n"
              "  start PostgreSQL, or set DATABASE_URL to a server that runs", file=sys.stderr)
        return 1
    with connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            print(f"database {name!r} exists")
            return 0
        try:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            pass  # created meanwhile by another start: fine
        except psycopg.Error as error:
            print(f"could not create database {name!r} named by DATABASE_URL: {error}".strip(), file=sys.stderr)
            return 1
    print(f"database {name!r} created")
    return 0


def database_drop(url: str) -> int:
    import psycopg
    from psycopg import sql

    from dpp.env import parse_database_url

    database = parse_database_url(url)
    try:
        with _maintenance_connection(database) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database["NAME"])))
    except psycopg.Error as error:
        print(f"could not drop database {database['NAME']!r}: {error}".strip(), file=sys.stderr)
        return 1
    print(f"database {database['NAME']!r} dropped")
    return 0


def redis_check(url: str) -> int:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=CONNECT_TIMEOUT_SECONDS,
                                      socket_connect_timeout=CONNECT_TIMEOUT_SECONDS)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as error:
        print(f"Redis does not answer at REDIS_URL={_redacted(url)}: {error}\n"
              "  start Redis, or set REDIS_URL to a server that runs", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    from django.core.exceptions import ImproperlyConfigured

    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    try:
        if argv[1:] == ["--drop"]:
            return database_drop(database_url)
        if argv[1:]:
            print(__doc__, file=sys.stderr)
            return 2
        database_status = database_ensure(database_url)
        return database_status or redis_check(redis_url)
    except ImproperlyConfigured as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
