"""Errors as responses: a Glitch raised from an endpoint *is* the response.

Run: python -m tophat examples.errors:app --port 8000
     curl -i 127.0.0.1:8000/users/7       -> 200 {"id": 7, "name": "ada"}
     curl -i 127.0.0.1:8000/users/9       -> 404 no such user          (Glitch on None)
     curl -i 127.0.0.1:8000/users/x       -> 400 user id must be a number  (exception + context)
     curl -i 127.0.0.1:8000/teapot        -> 418 short and stout       (a Glitch made by hand)
     curl -i 127.0.0.1:8000/boom          -> 500 Internal Server Error (an unexpected error)

The cause of a Glitch (the ValueError behind /users/x) is logged at DEBUG (`--log-level debug`)
but not shown to the client; see examples/errors_verbose.py for the debugging mode that shows it.
"""

from tophat import Glitch, Request, ResponseWriter, ResponseWritten
from tophat.glitch import call, ok_or

USERS = {7: "ada"}


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    # Headers set before a Glitch is raised stay on the error response.
    w.insert_header("x-app", "errors-example")
    parts = req.path.strip("/").split("/")
    if parts[0] == "users" and len(parts) == 2:
        uid = call(int, parts[1], status=400, message="user id must be a number", errors=ValueError)
        name = ok_or(USERS.get(uid), 404, "no such user")
        w.set_json({"id": uid, "name": name})
        return await w.send()
    if parts == ["teapot"]:
        raise Glitch(418, "short and stout", headers={"x-tip": "pour me out"})
    if parts == ["boom"]:
        raise RuntimeError("an unexpected bug: logged with its traceback, never shown")
    raise Glitch.not_found()
