"""GET / -> "Hello, world!".  Run: python -m tophat examples.hello:app --port 8000"""

from tophat import Request, ResponseWriter, ResponseWritten


async def app(req: Request, w: ResponseWriter) -> ResponseWritten:
    w.set_text("Hello, world!")
    return await w.send()
