#!/usr/bin/python3
"""The benchmark suite's orchestration (benchmarks/run.sh calls it; Python stdlib only).

Starts the server (build/bin/bench_ws_responder) in its own process, runs every client
as a process of its own against it, in interleaved rounds, and writes results.json (all
samples and the summary), results.md (tables) and PNG plots (gnuplot) to --out.

  /usr/bin/python3 benchmarks/suite.py --bin build/bin --out DIR [--quick]
      [--in-flight 1,16,64,128] [--sessions 100,1000,10000] [--rounds N]
      [--memory-rounds N] [--warmup S] [--duration S] [--server responder|emulator]
      [--clients lens-sessions,raw-lockstep,...]
  /usr/bin/python3 benchmarks/suite.py --out DIR --replot   # tables and plots again

Throughput: for each round, for each in-flight level, every client once (the order
rotates per round), all against the same server process. Memory: for each round, for
ws and wss, for each session count, every client once, each against a fresh server.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's: where python3-aiohttp and python3-websocket are

# Client name -> what it is (results.json config.clients). websocket-client runs at K = 1 only.
THROUGHPUT_CLIENTS = [
    ("raw-lockstep", "C raw Beast connections, 1 in flight each (floor)"),
    ("raw-pipelined", "1 raw Beast connection, K in flight (floor)"),
    ("lens-pipelined", "1 lens::session, K validate() in flight"),
    ("lens-sessions", "K lens::sessions, 1 in flight each"),
    ("aiohttp-sessions", "K aiohttp WebSocket connections on one asyncio loop, 1 in flight each"),
    ("websocket-client", "websocket-client send/recv loop, 1 connection, 1 in flight (only K=1)"),
]
SERVERS = {"responder": "`bench_ws_responder` (one thread; Beast upgrade, then every frame of a read answered with a fixed reply in one write)",
           "emulator": "`bench_ws_responder --emulator` (lens::emulator on one thread, one mailbox session)"}
MEMORY_CLIENTS = [
    ("lens-idle", "lens::sessions through one lens::client, idle"),
    ("raw-idle", "raw Beast WebSocket connections, a read pending on each"),
    ("aiohttp-idle", "aiohttp WebSocket connections on one asyncio loop"),
]


# One colour per client family in every plot.
COLOURS = {"raw-lockstep": "#7f7f7f", "raw-pipelined": "#000000", "raw-idle": "#000000",
           "lens-pipelined": "#1f5fbf", "lens-sessions": "#17a589", "lens-idle": "#1f5fbf",
           "aiohttp-sessions": "#e67e22", "aiohttp-idle": "#e67e22", "websocket-client": "#c0392b"}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def machine():
    info = {"hostname": platform.node(), "kernel": platform.release(), "cpus_online": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Core(s) per socket", "Thread(s) per core", "Socket(s)",
                             "CPU max MHz"):
                info[k.strip()] = v.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Server:
    """bench_ws_responder (or, with kind "emulator", lens::emulator through it) in its own
    process; its first stdout line says where it listens."""

    def __init__(self, bin_dir, tls, kind):
        cmd = [os.path.join(bin_dir, "bench_ws_responder")] + (["--tls"] if tls else []) + \
            (["--emulator"] if kind == "emulator" else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        try:
            self.info = json.loads(line)
        except ValueError:
            self.stop()
            raise RuntimeError(f"{' '.join(cmd)} did not start (said {line.strip()!r})") from None
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def client_command(bin_dir, client, server, k, args, sessions=None):
    common = ["--url", server.info["endpoint"], "--rest", server.info["rest"], "--key", "emulator-key",
              "--in-flight", str(k), "--warmup", str(args.warmup), "--duration", str(args.duration),
              "--server-pid", str(server.pid)]
    if server.info.get("tls"):
        common += ["--ca-file", server.info["ca_file"]]
    if sessions is not None:
        common += ["--sessions", str(sessions)]
    if client.startswith("aiohttp"):
        return [PYTHON, os.path.join(HERE, "aiohttp_client.py"),
                "--mode", "sessions" if client == "aiohttp-sessions" else "idle"] + common
    if client == "websocket-client":
        return [PYTHON, os.path.join(HERE, "websocket_client.py")] + common
    return [os.path.join(bin_dir, "bench_ws_clients"), "--mode", client] + common


def run_sample(cmd, timeout):
    load = loadavg()
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    except OSError as e:
        return {"error": str(e)}
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-400:]}"}
    try:
        sample = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON line: " + p.stdout[-200:]}
    sample["loadavg_before"] = load
    sample["process_seconds"] = time.monotonic() - t0
    return sample


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise_throughput(samples):
    groups = {}
    for s in samples:
        if "error" not in s:
            groups.setdefault((s["client"], s["in_flight"]), []).append(s)
    out = []
    for (client, k), ss in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out.append({
            "client": client, "in_flight": k, "rounds": len(ss),
            "rps": spread([s["rps"] for s in ss]),
            "cpu_us_per_request": spread([s["cpu_us_per_request"] for s in ss]),
            "client_cpu_share": spread([s["client_cpu_share"] for s in ss]),
            "server_cpu_share": spread([s["server_cpu_share"] for s in ss]),
            "latency_us": {p: spread([s["latency_us"][p] for s in ss]) for p in ("p50", "p90", "p99", "p999", "max")},
        })
    return out


def paired_ratios(samples, a, b, k):
    """(requests/s ratio, CPU per request ratio) of clients a and b in each round where both ran at k."""
    by_round = {}
    for s in samples:
        if "error" not in s and s["in_flight"] == k and s["client"] in (a, b):
            by_round.setdefault(s["round"], {})[s["client"]] = s
    return [(r[a]["rps"] / r[b]["rps"], r[a]["cpu_us_per_request"] / r[b]["cpu_us_per_request"])
            for r in by_round.values() if a in r and b in r and r[b]["rps"] and r[b]["cpu_us_per_request"]]


def summarise_memory(samples):
    groups = {}
    for s in samples:
        if "error" not in s:
            groups.setdefault((s["client"], s["tls"], s["sessions"]), []).append(s)
    out = []
    for (client, tls, n), ss in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        out.append({
            "client": client, "tls": tls, "sessions": n, "rounds": len(ss),
            "rss_kib_per_session": spread([s["rss_kib_per_session"] for s in ss]),
            "heap_kib_per_session": spread([s.get("heap_kib_per_session") for s in ss]),
            "opened_per_s": spread([s["opened_per_s"] for s in ss]),
            "cpu_ms_per_open": spread([s["cpu_ms_per_open"] for s in ss]),
            "server_rss_kib_per_session": spread([s.get("server_rss_kib_per_session") for s in ss]),
        })
    return out


# ---- output ------------------------------------------------------------------------

def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def cell(sp, digits=0, scale=1.0):
    """median [min–max]"""
    if not sp:
        return "–"
    return f"{fmt(sp['median'] * scale, digits)} [{fmt(sp['min'] * scale, digits)}–{fmt(sp['max'] * scale, digits)}]"


def markdown(result):
    m, cfg = result["machine"], result["config"]
    lines = [f"# lens benchmark suite — {result['started']}", "",
             f"Machine: {m.get('Model name', '?')}, {m.get('CPU(s)', m.get('cpus_online'))} CPUs "
             f"({m.get('Core(s) per socket', '?')} cores per socket × {m.get('Socket(s)', '?')}, "
             f"{m.get('Thread(s) per core', '?')} thread(s) per core), kernel {m.get('kernel')}; "
             f"load average {result['loadavg_start']:.2f} at the start, {result['loadavg_end']:.2f} at the end.",
             *([f"**The machine was shared** (load average above its {m.get('cpus_online')} CPUs): client and "
                f"server got only part of a CPU each, so requests/s and latencies are scheduling-limited and noisy; "
                f"compare CPU per request, which does not depend on the share a process got.", ""]
               if max(result['loadavg_start'], result['loadavg_end']) > (m.get('cpus_online') or 1) else [""]),
             f"Server: {SERVERS[cfg['server']]}, in its own process on 127.0.0.1; "
             f"every client in a process of its own, one thread. "
             f"Rounds: {cfg['rounds']} interleaved, {cfg['warmup']} s warm-up + {cfg['duration']} s window each; "
             f"cells are median [min–max] over the rounds.", "",
             "## Throughput: `session.validate` round trips", "",
             "| in flight | client | requests/s | client CPU µs/request | client CPU share | server CPU share "
             "| p50 µs | p99 µs |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["summary"]["throughput"]:
        lines.append(f"| {r['in_flight']} | {r['client']} | {cell(r['rps'])} | {cell(r['cpu_us_per_request'], 1)} "
                     f"| {fmt(r['client_cpu_share']['median'] * 100)}% | {fmt(r['server_cpu_share']['median'] * 100)}% "
                     f"| {fmt(r['latency_us']['p50']['median'])} | {fmt(r['latency_us']['p99']['median'])} |")
    lines += ["", "Server CPU share: the server process's CPU time (utime + stime from /proc/PID/stat) over the "
              "window divided by the window's wall time; near 100% the server, not the client, is the limit.",
              "", "### Ratios (medians)", ""]
    by = {(r["client"], r["in_flight"]): r for r in result["summary"]["throughput"]}
    for k in cfg["in_flight"]:
        def rps(c):
            r = by.get((c, k))
            return r["rps"]["median"] if r else None

        def cpu(c):
            r = by.get((c, k))
            return r["cpu_us_per_request"]["median"] if r else None
        parts = []
        for lens_c, other in (("lens-pipelined", "raw-pipelined"), ("lens-sessions", "raw-lockstep"),
                              ("lens-sessions", "aiohttp-sessions"), ("lens-pipelined", "aiohttp-sessions")):
            if rps(lens_c) and rps(other):
                parts.append(f"{lens_c}/{other}: {rps(lens_c) / rps(other):.2f}× req/s, "
                             f"{cpu(lens_c) / cpu(other):.2f}× CPU/request")
        if rps("lens-pipelined") and rps("websocket-client") is None and by.get(("websocket-client", 1)):
            wc = by[("websocket-client", 1)]["rps"]["median"]
            parts.append(f"lens-pipelined/websocket-client (K=1): {rps('lens-pipelined') / wc:.1f}× req/s")
        if parts:
            lines.append(f"- K={k}: " + "; ".join(parts))
    lines += ["", "### Ratios paired by round", "",
              "Each round runs every client once, one after another, so two clients of the same round met the "
              "machine in the same state; on a shared machine whose speed moves by tens of percent from one "
              "minute to the next, the ratio of a round's pair is steadier than the ratio of two medians. "
              "Cells: median [min–max] over the rounds of lens's figure divided by the other client's.", "",
              "| in flight | pair | requests/s | client CPU µs/request |", "|---:|---|---:|---:|"]
    for k in cfg["in_flight"]:
        for lens_c, other in (("lens-pipelined", "raw-pipelined"), ("lens-sessions", "raw-lockstep")):
            pairs = paired_ratios(result["samples"]["throughput"], lens_c, other, k)
            if pairs:
                lines.append(f"| {k} | {lens_c} / {other} | {cell(spread([p[0] for p in pairs]), 2)} "
                             f"| {cell(spread([p[1] for p in pairs]), 2)} |")
    lines += ["", "## Latency percentiles (µs, median over rounds)", "",
              "| in flight | client | p50 | p90 | p99 | p99.9 | max |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in result["summary"]["throughput"]:
        l = r["latency_us"]
        lines.append(f"| {r['in_flight']} | {r['client']} | " +
                     " | ".join(fmt(l[p]["median"]) for p in ("p50", "p90", "p99", "p999", "max")) + " |")
    lines += ["", "## Memory: idle sessions on one thread", "",
              f"Each sample: a fresh server and a fresh client process; after one warm-up session, N sessions "
              f"are opened (64 at a time), each does one round trip, then all idle. Rounds: {cfg['memory_rounds']} "
              f"(counts of 10,000 and more: the first round only). RSS = /proc/self/statm growth / N; heap = "
              f"mallinfo2 in-use growth / N (C++ only); CPU ms/open = client CPU over the opens / N.", "",
              "| transport | sessions | client | client RSS KiB/session | heap KiB/session | opened/s "
              "| CPU ms/open | server RSS KiB/connection |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in result["summary"]["memory"]:
        lines.append(f"| {'wss' if r['tls'] else 'ws'} | {r['sessions']} | {r['client']} "
                     f"| {cell(r['rss_kib_per_session'], 1)} | {cell(r['heap_kib_per_session'], 1)} "
                     f"| {cell(r['opened_per_s'])} | {cell(r['cpu_ms_per_open'], 2)} "
                     f"| {cell(r['server_rss_kib_per_session'], 1)} |")
    errors = [s for s in result["samples"]["throughput"] + result["samples"]["memory"] if "error" in s]
    if errors:
        lines += ["", "## Failed samples", ""] + [f"- {e.get('client')} K={e.get('in_flight')} "
                                                   f"sessions={e.get('sessions')}: {e['error']}" for e in errors]
    lines += ["", "Plots: throughput.png, cpu_per_request.png, server_cpu.png, latency.png, memory.png.", ""]
    return "\n".join(lines)


def plots(result, out):
    """Data files and gnuplot scripts (kept beside the PNGs, so a plot can be redrawn)."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots")
        return
    thr = result["summary"]["throughput"]
    clients = [c for c, _ in THROUGHPUT_CLIENTS if any(r["client"] == c for r in thr)]
    for c in clients:
        with open(os.path.join(out, f"throughput-{c}.dat"), "w") as f:
            f.write("# in_flight rps rps_min rps_max cpu_us cpu_min cpu_max server_share client_share "
                    "p50 p90 p99 p999\n")
            for r in thr:
                if r["client"] == c:
                    l = r["latency_us"]
                    f.write(" ".join(str(x) for x in (
                        r["in_flight"], r["rps"]["median"], r["rps"]["min"], r["rps"]["max"],
                        r["cpu_us_per_request"]["median"], r["cpu_us_per_request"]["min"],
                        r["cpu_us_per_request"]["max"], r["server_cpu_share"]["median"] * 100,
                        r["client_cpu_share"]["median"] * 100, l["p50"]["median"], l["p90"]["median"],
                        l["p99"]["median"], l["p999"]["median"])) + "\n")
    mem = result["summary"]["memory"]
    mem_series = []
    for tls in (False, True):
        for c, _ in MEMORY_CLIENTS:
            rows = [r for r in mem if r["client"] == c and r["tls"] == tls]
            if not rows:
                continue
            name = f"memory-{c}-{'wss' if tls else 'ws'}"
            mem_series.append((name, c, tls))
            with open(os.path.join(out, name + ".dat"), "w") as f:
                f.write("# sessions rss_kib median min max\n")
                for r in rows:
                    s = r["rss_kib_per_session"]
                    f.write(f"{r['sessions']} {s['median']} {s['min']} {s['max']}\n")

    head = ['set terminal pngcairo size 1000,640 font "DejaVu Sans,11"', "set key outside right top",
            "set grid", "set logscale x 2", "set offsets graph 0.04, graph 0.04, 0, 0"]
    title = f"{result['machine'].get('Model name', '')}, {result['machine'].get('CPU(s)', '')} CPUs"

    def series(col, err=None, style="linespoints"):
        parts = []
        for i, c in enumerate(clients):
            using = f"1:{col}:{err[0]}:{err[1]}" if err else f"1:{col}"
            with_ = "yerrorlines" if err else style
            parts.append(f"'throughput-{c}.dat' using {using} with {with_} lw 2 lc rgb '{COLOURS[c]}' pt {i + 5} "
                         f"title '{c}'")
        return "plot " + ", \\\n     ".join(parts)

    scripts = {
        "throughput": head + [f"set title 'session.validate requests/s vs requests in flight ({title})'",
                              "set xlabel 'requests in flight (K)'", "set ylabel 'requests/s (median, min–max)'",
                              "set logscale y", series(2, (3, 4))],
        "cpu_per_request": head + ["set title 'client CPU per request (getrusage; lower is better)'",
                                   "set xlabel 'requests in flight (K)'", "set ylabel 'µs CPU / request'",
                                   "set logscale y", series(5, (6, 7))],
        "server_cpu": head + ["set title 'server CPU share over the window (100% = the server is saturated)'",
                              "set xlabel 'requests in flight (K)'", "set ylabel '% of one CPU'",
                              "set yrange [0:110]", series(8)],
    }
    lat = []
    for i, c in enumerate(clients):
        lat.append(f"'throughput-{c}.dat' using 1:10 with linespoints lw 2 lc rgb '{COLOURS[c]}' pt {i + 5} "
                   f"title '{c} p50'")
        lat.append(f"'throughput-{c}.dat' using 1:12 with linespoints lw 1 dt 2 lc rgb '{COLOURS[c]}' pt {i + 5} "
                   f"title '{c} p99'")
    scripts["latency"] = head + ["set title 'latency percentiles: p50 (solid), p99 (dashed)'",
                                 "set xlabel 'requests in flight (K)'", "set ylabel 'µs'", "set logscale y",
                                 "plot " + ", \\\n     ".join(lat)]
    if mem_series:
        mem_plot = []
        for i, (name, c, tls) in enumerate(mem_series):
            idx = [m for m, _ in MEMORY_CLIENTS].index(c)
            mem_plot.append(f"'{name}.dat' using 1:2:3:4 with yerrorlines lw 2 lc rgb '{COLOURS[c]}' "
                            f"{'dt 2 ' if tls else ''}pt {idx + 5} title '{c} {'wss' if tls else 'ws'}'")
        scripts["memory"] = head + ["set logscale x 10",
                                    "set title 'client resident memory per idle session (ws solid, wss dashed)'",
                                    "set xlabel 'idle sessions on one thread'", "set ylabel 'KiB / session'",
                                    "set logscale y", "plot " + ", \\\n     ".join(mem_plot)]
    for name, lines in scripts.items():
        path = os.path.join(out, name + ".gp")
        with open(path, "w") as f:
            f.write("\n".join([lines[0], f"set output '{name}.png'"] + lines[1:]) + "\n")
        p = subprocess.run(["gnuplot", name + ".gp"], cwd=out, capture_output=True, text=True)
        if p.returncode != 0:
            log(f"gnuplot {name}: {p.stderr.strip()}")


# ---- the run -----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="where bench_ws_clients and bench_ws_responder are (build/bin)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--in-flight")
    ap.add_argument("--sessions")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--clients", help="throughput clients to run, comma-separated (default: all); "
                                      "--clients lens-sessions,raw-lockstep --memory-rounds 0 compares just those")
    ap.add_argument("--memory-rounds", type=int)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--server", choices=["responder", "emulator"], default="responder",
                    help="responder: bench_ws_responder (default); emulator: lens::emulator, one session")
    ap.add_argument("--replot", action="store_true",
                    help="only rewrite results.md and the plots from the results.json in --out")
    args = ap.parse_args()
    if args.replot:
        with open(os.path.join(args.out, "results.json")) as f:
            result = json.load(f)
        write_outputs(result, args.out)
        return
    if not args.bin:
        ap.error("--bin is required")
    if args.quick:
        defaults = dict(in_flight=[1, 16, 64], sessions=[100, 1000], rounds=3, memory_rounds=1,
                        warmup=0.2, duration=0.5)
    else:
        defaults = dict(in_flight=[1, 16, 64, 128], sessions=[100, 1000, 10000], rounds=5, memory_rounds=2,
                        warmup=0.5, duration=1.5)
    args.in_flight = [int(x) for x in args.in_flight.split(",")] if args.in_flight else defaults["in_flight"]
    args.sessions = [int(x) for x in args.sessions.split(",")] if args.sessions else defaults["sessions"]
    for k in ("rounds", "memory_rounds", "warmup", "duration"):
        if getattr(args, k) is None:
            setattr(args, k, defaults[k])
    os.makedirs(args.out, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = {"started": started, "machine": machine(), "loadavg_start": loadavg(),
              "config": {"quick": args.quick, "in_flight": args.in_flight, "sessions": args.sessions,
                         "rounds": args.rounds, "memory_rounds": args.memory_rounds, "warmup": args.warmup,
                         "duration": args.duration, "server": args.server,
                         "request": '{"type":"session.validate"}',
                         "clients": dict(THROUGHPUT_CLIENTS + MEMORY_CLIENTS)},
              "samples": {"throughput": [], "memory": []}}
    log(f"suite: {result['machine'].get('Model name')}, {os.cpu_count()} CPUs; load {result['loadavg_start']}")
    t_start = time.monotonic()
    timeout = args.warmup + args.duration + 60

    # Throughput: one server for all clients and rounds.
    server = Server(args.bin, False, args.server)
    try:
        names = [c for c, _ in THROUGHPUT_CLIENTS]
        if args.clients:
            wanted = args.clients.split(",")
            unknown = [c for c in wanted if c not in names]
            if unknown:
                ap.error(f"unknown client(s) {', '.join(unknown)}: choose from {', '.join(names)}")
            names = [c for c in names if c in wanted]
        for rnd in range(args.rounds):
            for k in args.in_flight:
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for client in order:
                    if client == "websocket-client" and k != 1:
                        continue
                    s = run_sample(client_command(args.bin, client, server, k, args), timeout)
                    s.update({"round": rnd, "client": client, "in_flight": k})
                    result["samples"]["throughput"].append(s)
                    log(f"round {rnd + 1}/{args.rounds} K={k:<4} {client:<17} " +
                        (s["error"] if "error" in s else
                         f"{s['rps']:>9.0f} req/s {s['cpu_us_per_request']:7.1f} µs CPU/req "
                         f"server {s['server_cpu_share'] * 100:3.0f}% p50 {s['latency_us']['p50']:.0f} µs"))
    finally:
        server.stop()

    # Memory: a fresh server per sample, so each starts from the same state.
    names = [c for c, _ in MEMORY_CLIENTS]
    for rnd in range(args.memory_rounds):
        for tls in (False, True):
            for n in args.sessions:
                if rnd > 0 and n >= 10000:
                    continue  # a minute per client over wss: the largest count is measured once
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for client in order:
                    try:
                        server = Server(args.bin, tls, args.server)
                    except RuntimeError as e:
                        s = {"error": str(e)}
                    else:
                        try:
                            s = run_sample(client_command(args.bin, client, server, 1, args, sessions=n), 300)
                        finally:
                            server.stop()
                    s.update({"round": rnd, "client": client, "tls": tls, "sessions": n})
                    result["samples"]["memory"].append(s)
                    log(f"memory round {rnd + 1}/{args.memory_rounds} {'wss' if tls else 'ws ':<3} {n:>6} "
                        f"{client:<13} " + (s["error"] if "error" in s else
                                            f"{s['rss_kib_per_session']:6.1f} KiB/session "
                                            f"{s['opened_per_s']:8.0f} opened/s"))

    result["loadavg_end"] = loadavg()
    result["seconds"] = time.monotonic() - t_start
    result["summary"] = {"throughput": summarise_throughput(result["samples"]["throughput"]),
                         "memory": summarise_memory(result["samples"]["memory"])}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_outputs(result, args.out)
    log(f"suite: {result['seconds']:.0f} s; results in {args.out}")


def write_outputs(result, out):
    md = markdown(result)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    plots(result, out)
    print(md)


if __name__ == "__main__":
    main()
