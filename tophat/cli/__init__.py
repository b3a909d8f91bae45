"""The command line: ``python -m tophat MODULE:ATTR [options]``, also installed as ``tophat``.

``build_parser()`` has the options (``--help`` lists them); ``main(argv)`` checks them all,
and the endpoint, before serving, and returns the exit status: 0 after a clean stop, 2 after
a mistake on the command line (one ``error: ...`` line on stderr).
"""

from __future__ import annotations

from tophat.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
