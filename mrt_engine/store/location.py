"""Where the store is: a SQLite file (the embedded default) or a PostgreSQL database.

``state.url`` names it: ``sqlite:///relative/or/absolute/path`` (``sqlite:////abs`` also works)
or ``postgresql://user@host:port/dbname`` (``postgres://`` too; ``?host=/run/postgresql`` for a
Unix socket, ``?sslmode=…`` and the other libpq parameters pass through). A password is never
written in the URL: it comes from the environment variable ``state.password_env`` names, like
every secret, and a URL that carries one is refused (the config file is not a secret store).
A bare path, and ``state.sqlite_path``, are SQLite as before.

:meth:`StoreLocation.display` is what messages show: the URL without anything secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

# libpq connection parameters a URL's query may set (the rest are refused: a typo is an error).
_PG_PARAMETERS = {
    "host",
    "port",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "target_session_attrs",
    "options",
}


class StoreUrlError(ValueError):
    """A store URL that cannot be used; the message names what is wrong, never a secret."""


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URL."""

    backend: str
    path: Path | None = None  # SQLite
    params: dict[str, str] = field(default_factory=dict)  # PostgreSQL: libpq keywords
    password_env: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.backend == SQLITE

    @property
    def is_postgresql(self) -> bool:
        return self.backend == POSTGRESQL

    def display(self) -> str:
        """The location for messages and the console header (no password, ever)."""
        if self.path is not None:
            return str(self.path)
        p = self.params
        host = p.get("host", "localhost")
        where = f"{host}:{p['port']}" if "port" in p and not host.startswith("/") else host
        user = f"{p['user']}@" if "user" in p else ""
        return f"postgresql://{user}{where}/{p.get('dbname', '')}"

    def __str__(self) -> str:
        return self.display()

    def connect_params(self) -> dict[str, str]:
        """libpq keywords to connect with, the password read from its variable now."""
        params = dict(self.params)
        if self.password_env:
            password = os.environ.get(self.password_env)
            if password is None:
                raise StoreUrlError(
                    f"the store's password variable {self.password_env} is not set"
                    " (state.password_env names it)"
                )
            params["password"] = password
        return params


def parse_location(
    url: str | os.PathLike[str],
    *,
    password_env: str | None = None,
    base: Path | None = None,
) -> StoreLocation:
    """A :class:`StoreLocation` from a URL or a path; ``base`` resolves a relative SQLite path
    (the config file's folder). :class:`StoreUrlError` when it cannot be used."""
    if isinstance(url, os.PathLike) or "://" not in str(url):
        return StoreLocation(SQLITE, path=_sqlite_path(str(url), base))
    text = str(url).strip()
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path (SQLAlchemy's way); and
        # sqlite:///absolute when the relative reading names no existing folder is not guessed.
        if not rest.startswith("/"):
            raise StoreUrlError(
                "a sqlite URL is sqlite:///path (relative) or sqlite:////path (absolute)"
            )
        path = rest[1:]
        if not path:
            raise StoreUrlError("the sqlite URL names no file: sqlite:///path/to/store.sqlite3")
        return StoreLocation(SQLITE, path=_sqlite_path(unquote(path), base))
    if scheme in ("postgresql", "postgres"):
        return StoreLocation(POSTGRESQL, params=_pg_params(text), password_env=password_env or None)
    raise StoreUrlError(
        f"unknown store URL scheme {scheme[:20]!r}: use sqlite:///path or postgresql://user@host/db"
    )


def _sqlite_path(raw: str, base: Path | None) -> Path:
    path = Path(raw).expanduser()
    if path.is_absolute() or base is None:
        return path
    return (base / path).resolve()


def _pg_params(url: str) -> dict[str, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StoreUrlError(f"the postgresql URL cannot be read: {exc}") from None
    if parts.password is not None:
        raise StoreUrlError(
            "the postgresql URL holds a password: remove it and name the environment variable"
            " that holds it in state.password_env"
        )
    params: dict[str, str] = {}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.hostname:
        params["host"] = unquote(parts.hostname)
    if port is not None:
        params["port"] = str(port)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise StoreUrlError("the postgresql URL names no database: postgresql://user@host/dbname")
    params["dbname"] = dbname
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            raise StoreUrlError(
                "the postgresql URL holds a password: name its environment variable in"
                " state.password_env instead"
            )
        if key not in _PG_PARAMETERS:
            known = ", ".join(sorted(_PG_PARAMETERS))
            raise StoreUrlError(f"unknown postgresql URL parameter {key[:40]!r} (known: {known})")
        params[key] = value
    return params
