"""The CLI's value types and the tables of flags that set ``ServerOpts`` fields.

One row of ``SERVE_FLAGS`` or ``OPTS_FLAGS`` is one flag: ``Flag("max_body_size",
size(minimum=0, none=True), "...")`` becomes ``--max-body-size`` and sets
``ServerOpts.max_body_size``; a row whose ``parse`` is ``SWITCH`` becomes ``--access-log`` and
``--no-access-log``. A flag that is not given sets nothing (argparse's ``SUPPRESS``: no
attribute at all), so ``"none"`` (lift the limit) and "not given" stay different, and a flag not
given leaves the field as the app module's ``opts`` has it (else the ``ServerOpts`` default).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tophat.server.opts import ServerOpts

__all__ = [
    "OPTS_FLAGS",
    "SERVE_FLAGS",
    "SWITCH",
    "Flag",
    "add_opts_flags",
    "count",
    "opts_kwargs",
    "port",
    "seconds",
    "size",
]

Parse = Callable[[str], Any]

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)
#: 1024-based, as nginx reads ``client_max_body_size 100m`` and as ServerOpts' KiB/MiB are.
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?", re.IGNORECASE)
_SECONDS_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: A longer timeout or grace period is surely a typo; ``none`` turns a timeout off.
MAX_SECONDS = 86400.0


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    try:
        n = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a port: a port is 0-65535")
    return n


def count(*, minimum: int = 1, none: bool = False) -> Parse:
    """A whole number ``>= minimum``; ``"none"`` gives ``None`` if ``none``."""

    def parse(text: str) -> int | None:
        if none and text.strip().lower() == "none":
            return None
        try:
            n = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(_expected("a whole number", text, none)) from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {n}")
        return n

    return parse


def size(*, minimum: int = 1, none: bool = False) -> Parse:
    """A size in bytes: ``1048576``, ``64K``, ``100M``, ``1G`` (1024-based; ``KiB``, ``MB``
    ... read alike); ``"none"`` gives ``None`` if ``none``."""

    def parse(text: str) -> int | None:
        if none and text.strip().lower() == "none":
            return None
        m = _SIZE.fullmatch(text.strip())
        if m is None:
            raise argparse.ArgumentTypeError(
                _expected("a size such as 512K, 100M or 1G", text, none)
            )
        n = int(float(m[1]) * _SIZE_UNITS[m[2].lower()])
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} bytes, got {text!r}")
        return n

    return parse


def seconds(*, minimum: float = 0.0, strict: bool = True, none: bool = False) -> Parse:
    """A duration: ``30``, ``2.5``, ``500ms``, ``2m`` (seconds unless a unit says otherwise),
    above ``minimum`` (``strict``) or at least it, at most a day; ``"none"`` gives ``None``
    (no limit) if ``none``."""

    def parse(text: str) -> float | None:
        if none and text.strip().lower() == "none":
            return None
        m = _SECONDS.fullmatch(text.strip())
        if m is None:
            raise argparse.ArgumentTypeError(
                _expected("a duration such as 30, 2.5s or 500ms", text, none)
            )
        value = float(m[1]) * _SECONDS_UNITS[(m[2] or "s").lower()]
        if not math.isfinite(value) or value > MAX_SECONDS:
            off = "; 'none' turns it off" if none else ""
            raise argparse.ArgumentTypeError(f"at most {MAX_SECONDS:g} seconds{off}, got {text!r}")
        if value < minimum or (strict and value == minimum):
            bound = "more than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g} seconds, got {text!r}")
        return value

    return parse


def _expected(what: str, text: str, none: bool) -> str:
    return f"expected {what}{' or none' if none else ''}, got {text!r}"


#: A row's ``parse`` for an on/off field: ``--FIELD`` sets True, ``--no-FIELD`` False.
SWITCH: Parse = bool


@dataclass(frozen=True, slots=True)
class Flag:
    """``--FIELD-WITH-DASHES VALUE`` sets ``ServerOpts.FIELD`` to ``parse(VALUE)``."""

    field: str
    parse: Parse
    help: str
    metavar: str | None = "N"
    choices: tuple[str, ...] | None = None

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")


_B, _S = "SIZE", "SECONDS"

#: The ServerOpts switches a deployment sets: how requests are parsed, logged and answered.
SERVE_FLAGS: tuple[Flag, ...] = (
    Flag(
        "parser",
        str,
        "request parser: h11 (reference) or httptools (tophat[fast]); auto prefers httptools",
        None,
        ("auto", "h11", "httptools"),
    ),
    Flag("access_log", SWITCH, "log one line per response (default off)"),
    Flag("server_header", str, "value of the Server response header (default none)", "NAME"),
    Flag("verbose_glitch", SWITCH, "show Glitch causes to clients (debugging; default off)"),
)

#: Every ServerOpts limit and timeout a deployment tunes, one flag a row (add yours here).
OPTS_FLAGS: tuple[Flag, ...] = (
    Flag("max_body_size", size(minimum=0, none=True), "largest request body (over: 413)", _B),
    Flag("max_head_size", size(), "largest request line + header fields (over: 431)", _B),
    Flag("max_header_count", count(), "most header fields in a request (over: 431)"),
    Flag("max_target_length", size(), "longest request-target (over: 414)", _B),
    Flag("head_timeout", seconds(none=True), "time to receive a request head (then 408)", _S),
    Flag("body_timeout", seconds(none=True), "longest wait for more of a request body", _S),
    Flag("keep_alive_timeout", seconds(none=True), "how long an idle connection stays open", _S),
    Flag("write_timeout", seconds(none=True), "longest wait for a client to take bytes", _S),
    Flag("max_connections", count(none=True), "connections served at once (one more: 503)"),
    Flag("shutdown_grace", seconds(strict=False), "time in-flight requests get on shutdown", _S),
    Flag(
        "disconnect_grace",
        seconds(strict=False, none=True),
        "time a handler may go on after its client left",
        _S,
    ),
    Flag("handler_timeout", seconds(none=True), "time a handler has to start its response", _S),
)


def _default(field: str) -> str:
    value = next(f.default for f in dataclasses.fields(ServerOpts) if f.name == field)
    if value is None:
        return "none"
    if isinstance(value, int) and not isinstance(value, bool):
        for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if value >= factor and value % factor == 0 and field.endswith(("_size", "_length")):
                return f"{value // factor}{unit}"
    return f"{value:g}s" if isinstance(value, float) else str(value)


def _add(add_argument: Callable[..., object], flag: Flag, help: str) -> None:
    if flag.parse is SWITCH:
        add_argument(
            flag.option,
            dest=flag.field,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help,
        )
        return
    add_argument(
        flag.option,
        dest=flag.field,
        type=flag.parse,
        choices=flag.choices,
        default=argparse.SUPPRESS,
        metavar=flag.metavar,
        help=help,
    )


def add_opts_flags(parser: argparse.ArgumentParser) -> None:
    """Add one option per row of ``SERVE_FLAGS`` and ``OPTS_FLAGS`` to ``parser``, in two
    groups of their own."""
    serving = parser.add_argument_group(
        "serving (ServerOpts)",
        "a flag given overrides that field of the app module's 'opts', if it has one",
    )
    for flag in SERVE_FLAGS:
        _add(serving.add_argument, flag, flag.help)
    limits = parser.add_argument_group(
        "limits and timeouts (ServerOpts)",
        # (line breaks by hand: the parser keeps its texts as written, for the epilog)
        "SIZE: bytes, or 512K, 100M, 1G (1024-based); SECONDS: 30, 2.5, 500ms, 2m;\n"
        "'none' turns off a limit or timeout whose ServerOpts field may be None",
    )
    for flag in OPTS_FLAGS:
        _add(limits.add_argument, flag, f"{flag.help}; default {_default(flag.field)}")


def opts_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServerOpts`` fields the command line set: only the flags given, so that an
    absent flag keeps the module's ``opts`` value (or the default)."""
    rows = SERVE_FLAGS + OPTS_FLAGS
    return {f.field: getattr(args, f.field) for f in rows if hasattr(args, f.field)}
