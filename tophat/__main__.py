"""Command line: ``python -m tophat MODULE:ATTR [--host H] [--port P] ...``.

Serves the endpoint ``ATTR`` of ``MODULE``, logs the address it listens on, and stops cleanly
(in-flight requests finish, within the grace period) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import ssl
import sys
from collections.abc import Sequence

from tophat.http.endpoint import Endpoint
from tophat.runtime.serve import RUNTIMES, MissingExtra, check_runtime, serve
from tophat.server.opts import ServerOpts

log = logging.getLogger("tophat.cli")


def load_endpoint(spec: str) -> Endpoint:
    """Import ``MODULE:ATTR`` (``ATTR`` may be dotted) and return it.

    Raises:
        SystemExit: with a message saying what is wrong with the spec.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: expected MODULE:ATTR (e.g. examples.hello:app), got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"error: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise SystemExit(f"error: {spec} is not callable (an endpoint is async (req, w) -> ...)")
    return obj


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tophat", description="Serve a tophat endpoint.")
    p.add_argument(
        "app", metavar="MODULE:ATTR", help="the endpoint to serve, e.g. examples.hello:app"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9999, help="port to listen on (default 9999)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="logging level (default info)",
    )
    p.add_argument("--access-log", action="store_true", help="log one line per response")
    p.add_argument("--server-header", default=None, help="value of the Server response header")
    p.add_argument(
        "--verbose-glitch", action="store_true", help="show Glitch causes to clients (debugging)"
    )
    p.add_argument(
        "--runtime",
        default="asyncio",
        choices=RUNTIMES,
        help="event loop: asyncio (default), uvloop (tophat[fast]) or trio (tophat[trio])",
    )
    p.add_argument(
        "--parser",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="request parser: h11 (reference) or httptools (tophat[fast]); auto prefers httptools",
    )
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (default 1)")
    p.add_argument("--uds", metavar="PATH", help="listen on a Unix domain socket instead of a port")
    p.add_argument("--ssl-certfile", metavar="PEM", help="serve TLS with this certificate chain")
    p.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    return p


def _ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise SystemExit("error: --ssl-keyfile needs --ssl-certfile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # TLS 1.2+, safe ciphers
    context.load_cert_chain(certfile, keyfile)
    return context


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        check_runtime(args.runtime)
    except MissingExtra as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.workers < 1:
        raise SystemExit("error: --workers must be >= 1")
    endpoint = load_endpoint(args.app)
    opts = ServerOpts(
        access_log=args.access_log,
        server_header=args.server_header,
        verbose_glitch=args.verbose_glitch,
        parser=args.parser,
    )
    if args.parser == "httptools":
        try:
            import httptools  # noqa: F401
        except ImportError:
            raise SystemExit("error: --parser httptools needs pip install 'tophat[fast]'") from None
    context = _ssl_context(args.ssl_certfile, args.ssl_keyfile)
    try:
        serve(
            endpoint,
            args.host,
            args.port,
            opts=opts,
            runtime=args.runtime,
            workers=args.workers,
            ssl=context,
            uds=args.uds,
        )
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except OSError as exc:
        where = args.uds or f"{args.host}:{args.port}"
        log.error("cannot listen on %s: %s", where, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
