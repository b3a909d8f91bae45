"""Streams the request body back as it arrives, never holding it whole in memory.

Run: python -m tophat examples.echo:app --port 8000
Try: curl -T bigfile http://127.0.0.1:8000/ -o copy

A body over the server's ``max_body_size`` (16 MiB by default) gets a 413 instead: serve with
``--max-body-size none`` (or a size, ``--max-body-size 1G``) to echo bigger files.
"""

from tophat import Request, ResponseWriter, ResponseWritten


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    content_type = req.headers.get("content-type")
    if content_type is not None:
        w.insert_header("content-type", content_type)
    # The response is sent chunked, pulling each piece of the request body as the client
    # reads the previous one: memory use stays flat whatever the size.
    w.set_body(req.stream())
    return await w.send()
