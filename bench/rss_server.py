"""Serve bench.rss_app:app with no request-body limit (the CLI has no flag for it).

    python bench/rss_server.py [--port P]     (P=0: any free port)

Prints ``PORT <n>`` on stdout once listening; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tophat
from bench.rss_app import app
from tophat import ServerOpts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log-level", default="warning")
    args = p.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def ready(server: tophat.Server) -> None:
        print(f"PORT {server.port}", flush=True)

    asyncio.run(
        tophat.serve_asyncio(
            app, "127.0.0.1", args.port, opts=ServerOpts(max_body_size=None), ready=ready
        )
    )


if __name__ == "__main__":
    main()
