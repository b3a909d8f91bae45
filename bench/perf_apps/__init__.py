"""The apps that bench/perf.py serves: one module per framework, the same answers everywhere.

Every app answers (where its tests need it):

    GET  /            "Hello, world!" (text/plain; charset=utf-8)
    POST /echo        the request body back (application/octet-stream)
    GET  /big         65,536 bytes (application/octet-stream)

plus the routing and middleware apps in ``tophat_apps`` and ``starlette_app``.
"""

HELLO = b"Hello, world!"
BIG = b"x" * 65536
ROUTES = 50  # the routing tests' table: /res0/:id ... /res49/:id
