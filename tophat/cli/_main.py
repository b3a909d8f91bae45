"""The command line's parser and ``main``: check everything, then serve.

Every mistake on the command line — a bad value, a missing file, an endpoint that is not one,
a missing extra — is one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tophat import __version__
from tophat.cli._options import add_opts_flags, count, opts_kwargs, port
from tophat.cli._reload import PARENT_FD_ENV, import_watchfiles, run_with_reload, watch_parent
from tophat.cli._setup import check_address, configure_logging, ssl_context
from tophat.cli._target import CliError, load_endpoint, source_dir
from tophat.runtime.discover import find_lifespan, find_opts
from tophat.runtime.serve import RUNTIMES, LifespanFailed, MissingExtra, check_runtime, serve
from tophat.server.opts import ServerOpts

__all__ = ["build_parser", "main"]

log = logging.getLogger("tophat.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage block: --help has it. (argparse's exit status for a usage error.)
        self.exit(2, "error: " + " ".join(message.split()) + "\n")


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m tophat" if name in ("", "__main__.py", "-c") else name


_EPILOG = """\
the app's module may define, beside MODULE:ATTR (found with no flag, and logged):
  lifespan  a function returning an async context manager (@asynccontextmanager): its
            setup runs in each worker before it accepts, its teardown after the drain
  opts      a tophat.ServerOpts the app is served with, e.g.
            opts = ServerOpts(error_format="json", access_log=True, max_body_size=64 << 20);
            a flag given here overrides the one field it names (--no-access-log,
            --max-body-size 1M), a flag not given leaves the module's value
"""


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments (``python -m tophat --help`` shows them)."""
    p = _Parser(
        prog=_prog(),
        description="Serve a tophat endpoint.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "app", metavar="MODULE:ATTR", help="the endpoint to serve, e.g. examples.hello:app"
    )
    p.add_argument("--version", action="version", version=f"tophat {__version__}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=9999, help="port to listen on (default 9999)")
    p.add_argument("--uds", metavar="PATH", help="listen on a Unix domain socket instead of a port")
    p.add_argument(
        "--workers",
        type=count(),
        default=1,
        metavar="N",
        help="processes sharing the port (default 1)",
    )
    p.add_argument(
        "--runtime",
        default="asyncio",
        choices=RUNTIMES,
        help="event loop: asyncio (default), uvloop (tophat[fast]) or trio (tophat[trio])",
    )
    p.add_argument("--ssl-certfile", metavar="PEM", help="serve TLS with this certificate chain")
    p.add_argument(
        "--ssl-keyfile", metavar="PEM", help="the certificate's private key (unencrypted)"
    )
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error", "critical"],
        help="logging level (default info; with --log-config, the tophat logger's level)",
    )
    p.add_argument(
        "--log-config",
        metavar="FILE",
        help="a logging.config file: .json (.yaml with PyYAML) for dictConfig, .ini for fileConfig",
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when a *.py file changes (tophat[reload]; not with --workers)",
    )
    p.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="watch DIR instead of the app's package (repeatable)",
    )
    add_opts_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (``python -m tophat`` and the ``tophat`` command); return the exit status."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        return _run(args, list(sys.argv[1:] if argv is None else argv))
    except (CliError, MissingExtra) as exc:
        p.error(str(exc))


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    reloading = args.reload and PARENT_FD_ENV not in os.environ  # (not in the reloader's child)
    if args.reload_dir and not args.reload:
        raise CliError("--reload-dir needs --reload")
    if reloading and args.workers > 1:
        raise CliError("--reload runs one server process: drop --workers")
    check_runtime(args.runtime)
    flags = opts_kwargs(args)  # only the flags given: they override the module's ``opts``
    opts = _opts(ServerOpts(), flags)  # checked here, before anything is imported
    _check_parser(opts.parser, "--parser httptools")
    context = ssl_context(args.ssl_certfile, args.ssl_keyfile)
    if args.uds is None:
        check_address(args.host, args.port)
    if reloading:
        import_watchfiles()
        paths = [_directory(d) for d in args.reload_dir or []] or [source_dir(args.app)]
        configure_logging(args.log_config, args.log_level)
        return run_with_reload(argv, paths, opts.shutdown_grace)
    configure_logging(args.log_config, args.log_level)
    watch_parent()
    endpoint = load_endpoint(args.app)
    try:
        lifespan = find_lifespan(args.app)  # a module-level ``lifespan`` beside the endpoint
        given = tuple("--" + field.replace("_", "-") for field in flags)
        module_opts = find_opts(args.app, given)  # and a module-level ``opts``
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if module_opts is not None:
        opts = _opts(module_opts, flags)
        _check_parser(opts.parser, f"{args.app.partition(':')[0]}.opts (parser='httptools')")
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
            lifespan=lifespan,
        )
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except LifespanFailed:  # (logged with its traceback where it failed)
        return 1
    except OSError as exc:  # the address is taken, not ours, or not permitted
        where = args.uds or f"{args.host}:{args.port}"
        raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return 0


def _opts(base: ServerOpts, flags: dict[str, Any]) -> ServerOpts:
    try:
        return dataclasses.replace(base, **flags)
    except ValueError as exc:  # (ServerOpts checks its fields together)
        raise CliError(str(exc)) from None


def _check_parser(parser: str, where: str) -> None:
    if parser != "httptools":
        return
    try:
        import httptools  # noqa: F401
    except ImportError:
        raise CliError(f"{where} needs httptools: pip install 'tophat[fast]'") from None


def _directory(path: str) -> Path:
    d = Path(path)
    if not d.is_dir():
        raise CliError(f"--reload-dir {path}: not a directory")
    return d.resolve()
