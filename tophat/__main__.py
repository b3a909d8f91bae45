"""``python -m tophat MODULE:ATTR [options]``: the command line lives in ``tophat.cli``."""

from __future__ import annotations

import sys

from tophat.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
