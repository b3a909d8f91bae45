"""What the CLI prepares before serving: logging, the TLS context, the address check.

Each mistake is a ``CliError`` whose one-line message names the flag and the file or value.
"""

from __future__ import annotations

import configparser
import json
import logging
import logging.config
import socket
import ssl
from pathlib import Path
from typing import Any

from tophat.cli._target import CliError
from tophat.runtime.logs import DEFAULT_FORMAT

__all__ = ["check_address", "configure_logging", "ssl_context"]


def configure_logging(config: str | None, level: str | None) -> None:
    """Logging as ``--log-config`` says, else a stderr handler at ``level`` (default info).

    ``--log-config``: a ``.json`` file (or ``.yaml``/``.yml`` with PyYAML installed) for
    ``logging.config.dictConfig``, any other name an ini file for ``fileConfig``. Loggers that
    exist already (``tophat.*``) stay enabled unless the file says otherwise. With it,
    ``--log-level`` (if given) sets the level of the ``tophat`` logger only.

    Raises:
        CliError: the file cannot be read or is not a valid configuration.
    """
    if config is None:
        logging.basicConfig(level=(level or "info").upper(), format=DEFAULT_FORMAT)
        return
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
        suffix = path.suffix.lower()
        if suffix == ".json":
            _dict_config(json.loads(text))
        elif suffix in (".yaml", ".yml"):
            _dict_config(_load_yaml(config, text))
        else:
            logging.config.fileConfig(
                configparser_from(text, config), disable_existing_loggers=False
            )
    except OSError as exc:
        raise CliError(f"--log-config {config}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise CliError(f"--log-config {config}: {type(exc).__name__}: {exc}") from None
    except configparser.Error as exc:
        raise CliError(f"--log-config {config}: {exc}") from None
    if level is not None:
        logging.getLogger("tophat").setLevel(level.upper())


def configparser_from(text: str, name: str) -> configparser.ConfigParser:
    """The ini text parsed as ``fileConfig`` parses it (read once: a missing file is an error
    here, where Python 3.11's ``fileConfig`` would report a missing ``formatters`` key)."""
    # (interpolation off: a log format's %(asctime)s is the format's, not the parser's)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text, source=name)
    return parser


def _load_yaml(config: str, text: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise CliError(
            f"--log-config {config} needs PyYAML (pip install pyyaml), or write it as .json or .ini"
        ) from None
    return yaml.safe_load(text)


def _dict_config(config: Any) -> None:
    if not isinstance(config, dict):
        raise ValueError("expected a mapping (logging.config.dictConfig's schema)")
    config.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(config)


def ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2+, the stdlib's safe ciphers) from PEM files, or ``None``.

    Raises:
        CliError: a file is missing or unreadable, is not PEM, is encrypted, or the key does not
            match the certificate.
    """
    if certfile is None:
        if keyfile is not None:
            raise CliError("--ssl-keyfile needs --ssl-certfile")
        return None
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise CliError(f"{flag} {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # No password: OpenSSL would otherwise prompt on the terminal for an encrypted key.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except ssl.SSLError as exc:
        files = f"{certfile} and {keyfile}" if keyfile else certfile
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise CliError(f"--ssl-keyfile {keyfile} is not the key of {certfile}") from None
        raise CliError(
            f"cannot load a certificate and its unencrypted private key from {files} "
            f"(PEM expected): {exc.reason or exc}"
        ) from None
    return context


def check_address(host: str, port: int) -> None:
    """Fail now, not after start-up, on a host name that does not resolve.

    Raises:
        CliError: naming the host and the resolver's reason.
    """
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise CliError(f"--host {host!r} is not an address here: {reason}") from None
