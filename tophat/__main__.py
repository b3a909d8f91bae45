"""Command line: ``python -m tophat MODULE:ATTR [--host H] [--port P] ...``.

Serves the endpoint ``ATTR`` of ``MODULE``, logs the address it listens on, and stops cleanly
(in-flight requests finish, within the grace period) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ._asyncio import serve
from ._connection import Endpoint
from ._opts import ServerOpts

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    endpoint = load_endpoint(args.app)
    opts = ServerOpts(
        access_log=args.access_log,
        server_header=args.server_header,
        verbose_glitch=args.verbose_glitch,
    )
    try:
        asyncio.run(serve(endpoint, args.host, args.port, opts=opts))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
