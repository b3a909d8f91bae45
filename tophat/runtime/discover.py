"""The CLI's conventions: a module-level ``lifespan`` and ``opts`` beside the served endpoint.

``python -m tophat mod:app`` serves ``app`` and reads two more names of ``mod``, when it
defines them, with no flag to add:

* ``lifespan``: a function returning an async context manager (see ``tophat.Lifespan``), run
  in every worker: setup before it accepts, teardown after the graceful drain;
* ``opts``: a ``tophat.ServerOpts``, what the app is served with (``error_format="json"``,
  ``access_log=True``, ``max_body_size=...``). A flag given on the command line overrides the
  one field it names (``--max-body-size 1M``, ``--no-access-log``); a flag not given leaves the
  module's value.

Nothing is found by any other name. To use ones defined elsewhere, name them in the module:
``from myapp.db import lifespan``. The CLI logs what it found, so what runs is never a surprise.
"""

from __future__ import annotations

import logging
import sys

from tophat.server.lifespan import Lifespan
from tophat.server.opts import ServerOpts

__all__ = ["LIFESPAN_ATTR", "OPTS_ATTR", "find_lifespan", "find_opts"]

LIFESPAN_ATTR = "lifespan"
OPTS_ATTR = "opts"

log = logging.getLogger("tophat.cli")


def _module_attr(spec: str, attr: str) -> tuple[str, object]:
    name = spec.partition(":")[0]
    return name, getattr(sys.modules.get(name), attr, None)


def find_lifespan(spec: str) -> Lifespan | None:
    """The ``lifespan`` of the module ``spec`` (``MODULE:ATTR``) names, if it has one.

    Call it after the endpoint was loaded: it reads the module already imported, and imports
    nothing.

    Raises:
        ValueError: the module's ``lifespan`` is not callable (the message says what it must be).
    """
    name, found = _module_attr(spec, LIFESPAN_ATTR)
    if found is None:
        return None
    if not callable(found):
        raise ValueError(
            f"{name}.{LIFESPAN_ATTR} is a {type(found).__name__}: the CLI runs a "
            "module-level 'lifespan' as a function returning an async context manager "
            "(@contextlib.asynccontextmanager); rename it"
        )
    log.info("lifespan: %s.%s runs in each serving process", name, LIFESPAN_ATTR)
    lifespan: Lifespan = found
    return lifespan


def find_opts(spec: str, overridden: tuple[str, ...] = ()) -> ServerOpts | None:
    """The ``opts`` of the module ``spec`` (``MODULE:ATTR``) names, if it has one.

    Like :func:`find_lifespan`, it reads the module already imported. ``overridden``: the
    command-line flags that replace some of its fields, for the log line.

    Raises:
        ValueError: the module's ``opts`` is not a ``ServerOpts`` (the message says what to do).
    """
    name, found = _module_attr(spec, OPTS_ATTR)
    if found is None:
        return None
    if not isinstance(found, ServerOpts):
        raise ValueError(
            f"{name}.{OPTS_ATTR} is a {type(found).__name__}: the CLI serves with a "
            "module-level 'opts' as the app's tophat.ServerOpts; make it ServerOpts(...) "
            "or rename it"
        )
    but = f" ({', '.join(overridden)} given on the command line)" if overridden else ""
    log.info("opts: using %s.%s%s", name, OPTS_ATTR, but)
    return found
