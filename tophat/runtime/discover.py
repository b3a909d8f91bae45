"""The CLI's lifespan convention: a module-level ``lifespan`` beside the served endpoint.

``python -m tophat mod:app`` serves ``app`` and, when ``mod`` also defines ``lifespan`` (a
function returning an async context manager, see ``tophat.Lifespan``), runs it in every
worker: no flag to add, and nothing found by any other name. To use a lifespan defined
elsewhere, name it in the module: ``from myapp.db import lifespan``. The CLI logs the one it
found, so what runs is never a surprise.
"""

from __future__ import annotations

import logging
import sys

from tophat.server.lifespan import Lifespan

__all__ = ["LIFESPAN_ATTR", "find_lifespan"]

LIFESPAN_ATTR = "lifespan"

log = logging.getLogger("tophat.cli")


def find_lifespan(spec: str) -> Lifespan | None:
    """The ``lifespan`` of the module ``spec`` (``MODULE:ATTR``) names, if it has one.

    Call it after the endpoint was loaded: it reads the module already imported, and imports
    nothing.

    Raises:
        ValueError: the module's ``lifespan`` is not callable (the message says what it must be).
    """
    name = spec.partition(":")[0]
    found: object = getattr(sys.modules.get(name), LIFESPAN_ATTR, None)
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
