"""The suite's websocket-client client (Debian python3-websocket) in its documented
send-and-receive loop: one connection, one request at a time, ws.send then ws.recv (the
Python SDK's pattern, protocol.md §3.6). --in-flight is always 1.

  python3 benchmarks/websocket_client.py --url WS_URL [--key KEY] [--ca-file PEM]
      [--warmup S] [--duration S] [--server-pid PID]

Prints one JSON line in the shape bench_ws_clients prints."""
import ssl
import time

import websocket

from bench_common import REQUEST, arguments, cpu_seconds, emit, process_cpu_seconds, summary


def main():
    args = arguments(["lockstep"])
    args.in_flight = 1
    sslopt = {"ca_certs": args.ca_file, "cert_reqs": ssl.CERT_REQUIRED} if args.ca_file else None
    ws = websocket.create_connection(args.url, header=["Authorization: Bearer " + args.key], sslopt=sslopt)
    # websocket-client sets TCP_NODELAY itself (its default socket options).
    end_warmup = time.perf_counter() + args.warmup
    while time.perf_counter() < end_warmup:
        ws.send_binary(REQUEST)
        ws.recv()
    latencies = []
    cpu0, server0 = cpu_seconds(), process_cpu_seconds(args.server_pid)
    t0 = time.perf_counter()
    end = t0 + args.duration
    now = t0
    while now < end:
        ws.send_binary(REQUEST)
        ws.recv()
        after = time.perf_counter()
        latencies.append((after - now) * 1e6)
        now = after
    wall = now - t0
    result = summary(latencies, wall, cpu_seconds() - cpu0, process_cpu_seconds(args.server_pid) - server0)
    ws.close()
    emit(result, "websocket-client", args)


if __name__ == "__main__":
    main()
