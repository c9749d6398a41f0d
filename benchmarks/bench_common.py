"""What the suite's Python clients share (aiohttp_client.py, websocket_client.py): the
server's CPU from /proc/PID/stat, this process's CPU and RSS, and the JSON summary in
the same shape as bench_ws_clients prints."""
import argparse
import json
import os
import resource
import sys

REQUEST = b'{"type":"session.validate"}'
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGESIZE")


def process_cpu_seconds(pid):
    """utime + stime of process pid, in seconds (0 when unknown)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def cpu_seconds():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def resident_bytes(pid="self"):
    """Resident set size of process pid (default: this one), in bytes (0 when unknown)."""
    if not pid:
        return 0
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[int(p * (len(sorted_values) - 1))]


def summary(latencies_us, wall, cpu, server_cpu):
    latencies_us.sort()
    n = len(latencies_us)
    return {
        "requests": n,
        "seconds": wall,
        "rps": n / wall if wall else 0.0,
        "client_cpu_s": cpu,
        "client_cpu_share": cpu / wall if wall else 0.0,
        "cpu_us_per_request": cpu * 1e6 / n if n else 0.0,
        "server_cpu_s": server_cpu,
        "server_cpu_share": server_cpu / wall if wall else 0.0,
        "latency_us": {
            "p50": percentile(latencies_us, 0.50),
            "p90": percentile(latencies_us, 0.90),
            "p99": percentile(latencies_us, 0.99),
            "p999": percentile(latencies_us, 0.999),
            "max": latencies_us[-1] if latencies_us else 0.0,
        },
    }


def arguments(modes):
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=modes, default=modes[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rest", default="")  # accepted for a uniform command line; unused
    p.add_argument("--key", default="emulator-key")
    p.add_argument("--ca-file", default="")
    p.add_argument("--in-flight", type=int, default=1)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--server-pid", type=int, default=0)
    p.add_argument("--open-concurrency", type=int, default=64)  # idle mode: connections opened at once
    return p.parse_args()


def emit(result, client, args):
    result.update({"client": client, "in_flight": args.in_flight, "tls": args.url.startswith("wss:")})
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
