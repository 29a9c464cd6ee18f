"""A TCP proxy that holds every chunk for a while in each direction: a mail server far away.

On 127.0.0.1 a round trip costs a few tens of microseconds, so the benchmark's sink rewards
whoever spends the least CPU. A real relay or an ESP's SMTP endpoint is a network away, where
the number of round trips per message sets the pace. This proxy sits between a client and the
sink and delivers each chunk it reads ``delay`` seconds after reading it, in order, both ways:
a round trip then costs twice the delay, whatever was sent in it.

Run as ``python -m bench.latency --target-port P --delay-ms D``; it prints its own port on the
first line of stdout and runs until SIGTERM. :class:`LatencyProxy` does that for a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from types import TracebackType

from bench.sink import start_listening

HOST = "127.0.0.1"


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(target_port: int, delay: float) -> None:
    async def connected(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(HOST, target_port)
        await asyncio.gather(_carry(client_r, server_w, delay), _carry(server_r, client_w, delay))

    server = await asyncio.start_server(connected, HOST, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


class LatencyProxy:
    """``with LatencyProxy(sink.port, delay_ms=2.5) as proxy:`` connect to ``proxy.port``."""

    def __init__(self, target_port: int, *, delay_ms: float) -> None:
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> LatencyProxy:
        command = [sys.executable, "-m", "bench.latency", "--target-port", str(self.target_port)]
        command += ["--delay-ms", str(self.delay_ms)]
        self.proc, self.port = start_listening(command, "the latency proxy")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True, help="one way, per chunk")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.target_port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
