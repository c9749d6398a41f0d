"""The suite's aiohttp client (Debian python3-aiohttp): many WebSocket connections on one
asyncio loop, one session.validate in flight on each (the way an asyncio program gets
concurrency out of a protocol without request ids), or N idle connections for memory.

  python3 benchmarks/aiohttp_client.py --mode sessions|idle --url WS_URL [--key KEY]
      [--ca-file PEM] [--in-flight K] [--sessions N] [--warmup S] [--duration S]
      [--server-pid PID]

Prints one JSON line in the shape bench_ws_clients prints."""
import asyncio
import os
import ssl
import time

import aiohttp

from bench_common import (REQUEST, arguments, cpu_seconds, emit, process_cpu_seconds,
                          resident_bytes, summary)


def ssl_context(args):
    if not args.url.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=args.ca_file or None)


async def connect(session, args, ctx):
    return await session.ws_connect(args.url, headers={"Authorization": "Bearer " + args.key},
                                    ssl=ctx, autoping=True, heartbeat=None, compress=0)


async def throughput(args):
    ctx = ssl_context(args)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        conns = [await connect(session, args, ctx) for _ in range(args.in_flight)]
        state = {"measuring": False, "running": True}
        latencies = []

        async def worker(ws):
            while state["running"]:
                sent = time.perf_counter()
                await ws.send_bytes(REQUEST)
                msg = await ws.receive()
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    raise RuntimeError(f"unexpected frame {msg.type}")
                if state["measuring"]:
                    latencies.append((time.perf_counter() - sent) * 1e6)

        tasks = [asyncio.create_task(worker(ws)) for ws in conns]
        await asyncio.sleep(args.warmup)
        state["measuring"] = True
        cpu0, server0, t0 = cpu_seconds(), process_cpu_seconds(args.server_pid), time.perf_counter()
        await asyncio.sleep(args.duration)
        wall = time.perf_counter() - t0
        cpu, server = cpu_seconds() - cpu0, process_cpu_seconds(args.server_pid) - server0
        state["measuring"] = False
        result = summary(latencies, wall, cpu, server)
        state["running"] = False
        await asyncio.gather(*tasks)
        for ws in conns:
            await ws.close()
        return result


KEEP = []


async def idle(args):
    ctx = ssl_context(args)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    KEEP.append(session)  # never closed: the process exits with every connection open
    warm = await connect(session, args, ctx)  # warm up: imports, the TLS context, the loop
    await warm.send_bytes(REQUEST)
    await warm.receive()
    await warm.close()
    rss0, server_rss0 = resident_bytes(), resident_bytes(args.server_pid)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    conns = []

    async def opener(count):
        for _ in range(count):
            conns.append(await connect(session, args, ctx))

    width = max(1, min(args.open_concurrency, args.sessions))
    await asyncio.gather(*(opener(args.sessions // width + (i < args.sessions % width)) for i in range(width)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0

    async def round_trips(some):
        for ws in some:  # one round trip each, then idle (aiohttp reads in the background)
            await ws.send_bytes(REQUEST)
            await ws.receive()

    await asyncio.gather(*(round_trips(conns[i::width]) for i in range(width)))
    n = args.sessions
    server_rss = (resident_bytes(args.server_pid) - server_rss0) / 1024 / n
    return {"sessions": n, "rss_kib_per_session": (resident_bytes() - rss0) / 1024 / n,
            "server_rss_kib_per_session": server_rss,
            "heap_kib_per_session": None, "rss_mib_total": resident_bytes() / 1048576,
            "opened_per_s": n / wall if wall else 0.0, "cpu_ms_per_open": cpu * 1000 / n}


def main():
    args = arguments(["sessions", "idle"])
    if args.mode == "sessions":
        emit(asyncio.run(throughput(args)), "aiohttp-sessions", args)
    else:
        emit(asyncio.run(idle(args)), "aiohttp-idle", args)
        os._exit(0)  # thousands of connections open: the kernel closes them


if __name__ == "__main__":
    main()
