"""``MissingExtra``: an optional feature was used without the extra that installs it.

A module of its own that imports nothing, so every layer can raise it (the runtimes and the
client for uvloop and trio, the http layer for ``forms``, the middleware for ``compress``):
one error type, whose message names the extra to install.
"""

from __future__ import annotations

__all__ = ["MissingExtra"]


class MissingExtra(RuntimeError):
    """An optional package was asked for and is not installed; the message names the extra
    (``pip install 'tophat[EXTRA]'``)."""
