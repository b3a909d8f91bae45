"""The same errors, with causes shown to the client — for debugging only.

Run: python -m tophat examples.errors_verbose:app --port 8000 --verbose-glitch
 or: python examples/errors_verbose.py [PORT]     (sets ServerOpts(verbose_glitch=True))
     curl -i 127.0.0.1:8000/users/x
     -> 400 user id must be a number: ValueError: invalid literal for int() with base 10: 'x'

Verbose glitches can leak internals (paths, SQL, keys): never turn them on in production.
"""

import json
import sys
from pathlib import Path

from tophat import Request, ResponseWriter, ResponseWritten, ServerOpts, serve
from tophat.glitch import catching

if not __package__:  # run as a script: the examples package is beside this file, not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from examples.errors import app as _errors_app

OPTS = ServerOpts(verbose_glitch=True)


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    if req.path == "/parse":
        # An exception inside a `with` block, given a status and a context message.
        with catching(400, "body must be JSON"):
            doc = json.loads(await req.body())
        w.set_json({"got": doc})
        return await w.send()
    return await _errors_app(req, w)


if __name__ == "__main__":
    serve(app, "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8000, opts=OPTS)
