"""The notes app's settings, read from the environment once, and the secret key they lead to.

* ``NOTES_DATABASE_URL``: ``sqlite:///ABS/PATH`` or ``postgresql://user:pass@host/db``
  (``postgres://`` too). Default: ``$XDG_DATA_HOME/tophat-notes/notes.db``, else
  ``~/.local/share/tophat-notes/notes.db``, created on first start.
* ``NOTES_SECRET_KEY``: the key that signs login cookies. With SQLite and no key, one is
  generated on first start and kept in ``secret_key`` beside the database file (mode 0600), so
  every worker and every restart signs with the same key. With PostgreSQL it is required: the
  app may run on several machines, and a key made up on one would not verify on another.
* ``NOTES_ALLOWED_ORIGINS``: comma-separated origins allowed to call the API from a page on
  another site (CORS, with credentials); default none.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["ConfigError", "Settings", "default_sqlite_path", "secret_key"]

log = logging.getLogger("examples.notes")

KEY_FILE = "secret_key"


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def default_sqlite_path(env: Mapping[str, str]) -> Path:
    """Where the database lives when ``NOTES_DATABASE_URL`` is not set (XDG base dirs)."""
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "tophat-notes" / "notes.db"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the app reads from its environment, plus knobs the tests turn.

    Args:
        backend: ``"sqlite"`` or ``"postgresql"``.
        sqlite_path: the SQLite file (``backend == "sqlite"``).
        postgres_url: the libpq connection string (``backend == "postgresql"``).
        secret_key: the cookie key, or None to use (or make) the one beside the SQLite file.
        allowed_origins: CORS origins allowed with credentials.
        scrypt_n: the scrypt cost for new hashes (a power of two; raising it rehashes each
            password at its next login).
        login_window: seconds over which failed logins are counted.
        login_limit_user, login_limit_address: failed logins allowed per window, per username
            and per client address, before logins answer 429.
        secure_cookies: ``Secure`` login cookies (off only for plain-http development).
        pool_size: PostgreSQL connections per worker.
    """

    backend: Literal["sqlite", "postgresql"]
    sqlite_path: Path | None = None
    postgres_url: str | None = None
    secret_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    scrypt_n: int = 2**15
    login_window: float = 900.0
    login_limit_user: int = 5
    login_limit_address: int = 50
    secure_cookies: bool = True
    pool_size: int = 10
    session_max_age: int = 7 * 86400

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``NOTES_*`` from ``env`` (default: ``os.environ``). Does no I/O.

        Raises:
            ConfigError: a malformed URL or origin list.
        """
        env = os.environ if env is None else env
        url = env.get("NOTES_DATABASE_URL", "").strip()
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("NOTES_ALLOWED_ORIGINS", "").split(",")
        )
        origins = tuple(o for o in origins if o)
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ConfigError(
                    f"NOTES_ALLOWED_ORIGINS: {origin!r} is not an origin "
                    "(scheme://host[:port], e.g. https://notes.example)"
                )
        key = env.get("NOTES_SECRET_KEY") or None
        if not url:
            return cls("sqlite", default_sqlite_path(env), None, key, origins)
        scheme = url.partition(":")[0].lower()
        if scheme == "sqlite":
            parts = urlsplit(url)
            path = unquote(parts.path)
            if parts.netloc or not path.startswith("/") or path == "/":
                raise ConfigError(
                    f"NOTES_DATABASE_URL {url!r}: an SQLite URL is sqlite:///ABSOLUTE/PATH "
                    "(three slashes, then the file's absolute path)"
                )
            return cls("sqlite", Path(path), None, key, origins)
        if scheme in ("postgresql", "postgres"):
            if key is None:
                raise ConfigError(
                    "NOTES_SECRET_KEY is required with PostgreSQL: every worker and machine "
                    "must sign cookies with the same key. Make one with: python -c "
                    "'import secrets; print(secrets.token_urlsafe(32))'"
                )
            return cls("postgresql", None, url, key, origins)
        raise ConfigError(
            f"NOTES_DATABASE_URL {url!r}: expected sqlite:///ABS/PATH or postgresql://..."
        )

    def describe(self) -> str:
        """The database in use, for the startup line (no password)."""
        if self.backend == "sqlite":
            return f"SQLite {self.sqlite_path}"
        parts = urlsplit(self.postgres_url or "")
        host = parts.hostname or "local socket"
        where = f"{host}:{parts.port}" if parts.port else host
        return f"PostgreSQL {where}{parts.path}"


def secret_key(settings: Settings) -> str:
    """The cookie key: the configured one, else the one kept beside the SQLite file (made on
    first use, mode 0600, in a directory made 0700).

    Raises:
        ConfigError: PostgreSQL without a key, or a key file that is not private.
    """
    if settings.secret_key is not None:
        return settings.secret_key
    if settings.sqlite_path is None:
        raise ConfigError("NOTES_SECRET_KEY is required with PostgreSQL")
    directory = settings.sqlite_path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE
    try:
        # O_EXCL: two workers starting at once make one key; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        log.info("made a new secret key in %s", path)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others: chmod 600 {path}")
    for _ in range(50):  # the winner may not have written it yet
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise ConfigError(f"{path} is empty: delete it to have a new key made")
