"""A client that leaves while its request is handled (issue 11, finding 3).

The connection learns it at once (a reset or an end of input from the transport), frees its
``max_connections`` place, tells the endpoint through ``req.disconnected``, and cancels an
endpoint still running ``ServerOpts.disconnect_grace`` seconds later. On every runtime and
parser. Before this, ``Connection.gone`` always said False: 1000 SSE clients that reset left
every later client with 503 until shutdown.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import anyio
import pytest
from servers import Client, Serving

from tophat import Request, ResponseWriter, ResponseWritten

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytestmark = pytest.mark.usefixtures("no_error_logs")

GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"


class Recorder:
    """What endpoints saw, and an event per thing to wait for."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.told = anyio.Event()
        self.cancelled = anyio.Event()
        self.running = 0
        self.flags: list[bool] = []


def waiting_endpoint(rec: Recorder):  # type: ignore[no-untyped-def]
    """/wait: waits for req.disconnected; /hang: sleeps (only cancellation ends it);
    /slow: answers after 0.3 s, noting whether the client had left."""

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        rec.running += 1
        rec.started.set()
        try:
            if req.path == "/wait":
                await req.disconnected.wait()
                rec.told.set()
            elif req.path == "/hang":
                await anyio.sleep(60)
            elif req.path == "/slow":
                await anyio.sleep(0.3)
            rec.flags.append(req.disconnected.is_set())
        except anyio.get_cancelled_exc_class():
            rec.cancelled.set()
            raise
        finally:
            rec.running -= 1
        w.set_text("done")
        return await w.send()

    return endpoint


async def request_then(client: Client, rec: Recorder, path: str) -> None:
    await client.send(GET % path.encode())
    with anyio.fail_after(5):
        await rec.started.wait()
    rec.started = anyio.Event()


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_an_endpoint_waiting_on_disconnected_is_told_when_the_client_leaves(
    serving: Serving, how: str
) -> None:
    rec = Recorder()
    async with serving(waiting_endpoint(rec), disconnect_grace=None) as server:
        c = await Client.connect(server.port)
        await request_then(c, rec, "wait")
        await anyio.sleep(0.2)  # the endpoint is well into its wait (trio: its watcher runs)
        await (c.reset() if how == "reset" else c.close())
        with anyio.fail_after(2):
            await rec.told.wait()
        assert rec.flags == [True]


async def test_an_endpoint_is_told_soon_even_when_the_client_leaves_at_once(
    serving: Serving,
) -> None:
    rec = Recorder()
    async with serving(waiting_endpoint(rec), disconnect_grace=None) as server:
        c = await Client.connect(server.port)
        await request_then(c, rec, "wait")
        await c.reset()
        with anyio.fail_after(2):
            await rec.told.wait()


async def test_clients_that_left_free_their_places_at_once(serving: Serving) -> None:
    """The issue's reproduction, bounded: as many departed waiting clients as the limit
    allows, then a new client is served, not refused with 503."""
    rec = Recorder()
    limit = 20
    async with serving(waiting_endpoint(rec), max_connections=limit) as server:
        for _ in range(limit):
            c = await Client.connect(server.port)
            await request_then(c, rec, "hang")
            await c.reset()
        await anyio.sleep(0.3)  # trio: the watchers start after one sweep tick
        c = await Client.connect(server.port)
        await c.send(GET % b"")
        with anyio.fail_after(5):
            status, _, body = await c.response()
        assert (status, body) == (200, b"done")
        await c.close()
        assert rec.running == limit  # still within their grace: not cancelled yet


async def test_an_endpoint_still_running_after_the_grace_is_cancelled(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    caplog.set_level(logging.INFO, logger="tophat")
    async with serving(waiting_endpoint(rec), disconnect_grace=0.2) as server:
        c = await Client.connect(server.port)
        await request_then(c, rec, "hang")
        await anyio.sleep(0.15)
        await c.reset()
        with anyio.fail_after(3):
            await rec.cancelled.wait()
        await anyio.sleep(0.05)
        assert rec.running == 0
        c = await Client.connect(server.port)  # and the server serves on
        await c.send(GET % b"")
        with anyio.fail_after(5):
            assert (await c.response())[0] == 200
        await c.close()
    lines = [r.getMessage() for r in caplog.records if "the client left" in r.getMessage()]
    assert len(lines) == 1, lines  # once, at INFO, with no traceback
    assert not any(r.exc_info for r in caplog.records)


async def test_without_a_grace_a_departed_clients_endpoint_runs_to_its_end(
    serving: Serving,
) -> None:
    rec = Recorder()
    async with serving(waiting_endpoint(rec), disconnect_grace=None) as server:
        c = await Client.connect(server.port)
        await request_then(c, rec, "slow")
        await c.reset()
        with anyio.fail_after(3):
            while not rec.flags:
                await anyio.sleep(0.02)
        assert rec.flags == [True]
        assert not rec.cancelled.is_set()


async def test_a_client_that_stays_is_never_told(serving: Serving) -> None:
    rec = Recorder()
    async with serving(waiting_endpoint(rec), disconnect_grace=0.1) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"slow")
        with anyio.fail_after(5):
            status, _, body = await c.response()
        assert (status, body, rec.flags) == (200, b"done", [False])
        await c.close()


async def test_requests_pipelined_before_a_half_close_are_all_answered(serving: Serving) -> None:
    """An end of input after more requests is not a departure: the client waits for them."""
    rec = Recorder()
    async with serving(waiting_endpoint(rec), disconnect_grace=0.1) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"slow" + GET % b"slow" + GET % b"")
        c.sock.shutdown(socket.SHUT_WR)
        with anyio.fail_after(5):
            data = await c.read_all()
        await c.close()
        assert data.count(b"HTTP/1.1 200 OK\r\n") == 3
        assert rec.flags == [False, False, False]
        assert not rec.cancelled.is_set()


async def test_a_client_that_half_closes_after_its_request_counts_as_gone_but_can_read(
    serving: Serving,
) -> None:
    """The documented semantics: nothing follows the request, so the client left (as nginx
    decides); an endpoint that answers within the grace still reaches a half-closed client."""
    rec = Recorder()
    async with serving(waiting_endpoint(rec), disconnect_grace=2.0) as server:
        c = await Client.connect(server.port)
        await request_then(c, rec, "wait")
        await anyio.sleep(0.2)
        c.sock.shutdown(socket.SHUT_WR)
        with anyio.fail_after(2):
            await rec.told.wait()
        with anyio.fail_after(5):
            data = await c.read_all()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"done")
        await c.close()


async def test_a_departed_streaming_client_is_told_and_the_stream_ends(serving: Serving) -> None:
    """An SSE-like stream that waits between events ends when its client resets."""
    ended = anyio.Event()
    started = anyio.Event()

    async def events(req: Request, w: ResponseWriter) -> ResponseWritten:
        async def pieces():  # type: ignore[no-untyped-def]
            yield b"data: first\n\n"
            started.set()
            await req.disconnected.wait()
            ended.set()

        w.insert_header("content-type", "text/event-stream")
        w.set_body(pieces())
        return await w.send()

    async with serving(events, disconnect_grace=1.0) as server:
        c = await Client.connect(server.port)
        await c.send(GET % b"events")
        with anyio.fail_after(5):
            await started.wait()
            assert b"data: first" in await c.read_until(b"data: first\n\n")
        await anyio.sleep(0.2)
        await c.reset()
        with anyio.fail_after(2):
            await ended.wait()


async def test_under_asgi_disconnected_is_the_servers_http_disconnect() -> None:
    from test_asgi import Peer, call, http_scope

    from tophat.asgi import to_asgi

    told: list[bool] = []

    async def endpoint(req: Request, w: ResponseWriter) -> ResponseWritten:
        told.append(req.disconnected.is_set())
        await req.disconnected.wait()
        told.append(req.disconnected.is_set())
        return await w.send()

    peer = Peer(b"unread body")
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, to_asgi(endpoint), http_scope("POST", "/"), peer)
        await anyio.sleep(0.05)
        assert told == [False]
        peer.disconnect()
    assert told == [False, True]


async def test_a_watcher_begun_as_the_endpoint_ends_never_races_the_next_read(
    serving: Serving,
) -> None:
    # trio: the sweep starts a watcher task for an endpoint that has run a whole tick. An
    # endpoint that ends in the same scheduling batch lets the connection read before that task
    # runs: the read must stop the watcher, or both wait on one socket and trio's
    # BusyResourceError took the whole server down (seen once in CI). Endpoints that end right
    # on the sweep's ticks, many times over, on several connections at once.
    async def on_the_tick(req: Request, w: ResponseWriter) -> ResponseWritten:
        await anyio.sleep(0.1)  # two sweep ticks (SWEEP_TICK = 0.05)
        w.set_text("ok")
        return await w.send()

    async def keep_asking(port: int) -> None:
        c = await Client.connect(port)
        for _ in range(12):
            await c.send(GET % b"x")
            with anyio.fail_after(5):
                assert (await c.response())[0] == 200
        await c.close()

    async with serving(on_the_tick) as server, anyio.create_task_group() as tasks:
        for _ in range(6):
            tasks.start_soon(keep_asking, server.port)


@pytest.mark.parametrize("how", ["connection-close", "http/1.0"])
async def test_connections_the_server_closed_leave_nothing_behind(
    serving: Serving, runtime: str, how: str
) -> None:
    # asyncio: the transport reports the end after the connection's task ended; it once put
    # the connection back among the departed, where it stayed (memory, and a shutdown that
    # waited for requests no one was making).
    async def hello(req: Request, w: ResponseWriter) -> ResponseWritten:
        w.set_text("hi")
        return await w.send()

    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        if how == "connection-close"
        else b"GET / HTTP/1.0\r\n\r\n"
    )
    async with serving(hello) as server:
        for _ in range(20):
            c = await Client.connect(server.port)
            await c.send(request)
            with anyio.fail_after(5):
                assert (await c.response())[0] == 200
            await c.close()
        await anyio.sleep(0.1)  # (the last transports report their end)
        if runtime == "trio":
            assert not server._pool.conns
        else:
            assert (server.in_flight(), len(server.pool.conns), len(server.pool.gone)) == (0, 0, 0)
