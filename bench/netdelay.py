"""A TCP proxy that delays every byte by a fixed one-way latency: target databases "across a network".

The bench's target databases sit on the same machine as the workers, so checking one costs CPU and
no waiting. Production targets are elsewhere, and then a check mostly waits on round trips. The
fan-out benchmark routes a second instance through this proxy to measure that case too. Each
direction keeps its order: a chunk read at time t is written at t + delay, without stalling the
chunks behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        finally:
            queue.put_nowait((loop.time() + delay, b""))  # end of stream

    async def write() -> None:
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    return
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()

    await asyncio.gather(read(), write(), return_exceptions=True)


async def _serve(upstream: tuple[str, int] | str, delay: float, ready: asyncio.Future[int]) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if isinstance(upstream, str):
            server_reader, server_writer = await asyncio.open_unix_connection(upstream)
        else:
            server_reader, server_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(
            _forward(client_reader, server_writer, delay), _forward(server_reader, client_writer, delay)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


@contextmanager
def delayed_proxy(upstream: tuple[str, int] | str, one_way_ms: float) -> Iterator[int]:
    """Serve a proxy to `upstream` ((host, port) or a Unix socket path) on 127.0.0.1; yields its port."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[int] = loop.create_future()
    serving = loop.create_task(_serve(upstream, one_way_ms / 1000, ready))  # held: a loop keeps tasks weakly
    thread = threading.Thread(target=loop.run_forever, name="bench-netdelay", daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 10), loop).result()
    finally:
        loop.call_soon_threadsafe(serving.cancel)
        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _cancel_all() -> None:
    """Stop the server and every open connection's tasks, and wait for them to end."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
