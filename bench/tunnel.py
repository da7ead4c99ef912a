"""Portway tunnel benchmark: bulk throughput, new connections/s with setup latency, and HTTP
keep-alive requests/s — each through a tunnel and on the direct path, measured in the same run.

Run: python bench/tunnel.py [--bulk-mib 2048] [--conns 4000] [--wrk-seconds 5]
Everything runs on loopback in separate processes (engine, agent, peers, load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
CHUNK = 1024 * 1024


def spawn(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kwargs)  # type: ignore[call-overload]


def read_until(proc: subprocess.Popen[str], pattern: str, timeout_s: float = 20) -> re.Match[str]:
    assert proc.stdout is not None
    found: list[re.Match[str]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(pattern, line)
            if match:
                found.append(match)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not found:
        raise RuntimeError(f"timed out waiting for {pattern!r}")
    return found[0]


def peer(kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = spawn([sys.executable, str(HERE / "servers.py"), kind])
    return proc, int(read_until(proc, r"^(\d+)").group(1))


def bulk(port: int, total: int) -> float:
    """Send `total` bytes on one connection; MB/s until the sink confirms receipt of every byte."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        block = b"\0" * CHUNK
        start = time.perf_counter()
        sock.sendall(total.to_bytes(8, "big"))
        sent = 0
        while sent < total:
            sock.sendall(block)
            sent += CHUNK
        assert sock.recv(2) == b"ok"
        return total / (time.perf_counter() - start) / 1e6


class _OneByte(asyncio.Protocol):
    """Sends one byte on connect and resolves `done` when it comes back: the cheapest client the
    event loop allows, so the load generator is not what limits the connection rate."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"x")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the echo"))


async def _connections(port: int, count: int, concurrency: int) -> tuple[float, list[float]]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            done: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(lambda done=done: _OneByte(done), "127.0.0.1", port)
            await done
            latencies.append(time.perf_counter() - t0)
            transport.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start), latencies


def connections(port: int, count: int, concurrency: int = 16) -> dict[str, float]:
    rate, lat = uvloop.run(_connections(port, count, concurrency))
    lat.sort()
    return {"conn_per_s": rate, "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000}


def h2load(url: str, seconds: int, *, connect_to: str | None = None, h1: bool = False,
           clients: int = 4, streams: int = 8) -> float:
    """Requests/s from h2load (nghttp2-client): `clients` connections with `streams` requests in flight each."""
    args = ["h2load", f"-D{seconds}", f"-c{clients}", f"-m{streams}", "-t1", url]
    if h1:
        args.insert(1, "--h1")
    if connect_to:
        args[1:1] = ["--connect-to", connect_to]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    return float(re.search(r"finished in [^,]+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]


async def _websocket(uri: str, round_trips: int, connections: int, **connect: object) -> dict[str, float]:
    """Echo round trips of 64-byte messages: one connection in lockstep (latency), then `connections`
    in parallel (messages/s)."""
    from websockets.asyncio.client import connect as ws_connect

    message = b"m" * 64
    async with ws_connect(uri, compression=None, **connect) as ws:  # type: ignore[arg-type]
        rtts = []
        for _ in range(round_trips):
            t0 = time.perf_counter()
            await ws.send(message)
            await ws.recv()
            rtts.append(time.perf_counter() - t0)

    async def pump(per_connection: int) -> None:
        async with ws_connect(uri, compression=None, **connect) as ws:  # type: ignore[arg-type]
            for _ in range(per_connection):
                await ws.send(message)
                await ws.recv()

    per = max(1, round_trips // connections)
    start = time.perf_counter()
    await asyncio.gather(*(pump(per) for _ in range(connections)))
    rate = per * connections / (time.perf_counter() - start)
    rtts.sort()
    return {"rtt_p50_ms": statistics.median(rtts) * 1000, "rtt_p99_ms": rtts[int(len(rtts) * 0.99)] * 1000,
            "msgs_per_s": rate}


def websocket(uri: str, round_trips: int = 3000, connections: int = 16, **connect: object) -> dict[str, float]:
    return {k: round(v, 2) for k, v in uvloop.run(_websocket(uri, round_trips, connections, **connect)).items()}


def cpu_seconds(pid: int) -> float:
    """User+system CPU a process has used so far (Linux /proc), to show where a phase's time went."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, host: str | None = None) -> float:
    args = ["wrk", "-t1", "-c32", f"-d{seconds}s", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk-mib", type=int, default=2048)
    parser.add_argument("--conns", type=int, default=4000)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    args = parser.parse_args()
    total = args.bulk_mib * CHUNK
    procs: list[subprocess.Popen[str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="portway-bench-"))
    results: dict[str, object] = {}
    try:
        (tmp / "engine.yaml").write_text(
            "tls:\n  listen_addr: 127.0.0.1:0\ntcp:\n  port_min: 21000\n  port_max: 21999\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        engine = spawn([sys.executable, "-m", "portway", "-l", "warning", "engine", "-c", str(tmp / "engine.yaml"),
                        "--state-dir", str(tmp / "state")], env=env)
        procs.append(engine)
        engine_port = int(read_until(engine, r"listening on [^ ]+:(\d+)").group(1))
        token = read_until(engine, r"Ready token \(30 days\): (\S+)").group(1)
        ca = str(tmp / "state" / "ca.pem")
        agent_args = ["--engine", f"127.0.0.1:{engine_port}", "--token", token, "--engine-tls-ca-file", ca,
                      "-o", "json"]

        def tunnel(target_port: int, *flags: str) -> tuple[str, int]:
            proc = spawn([sys.executable, "-m", "portway", "-l", "warning", "forward", str(target_port),
                          *flags, *agent_args], env=env)
            procs.append(proc)
            return json.loads(read_until(proc, r"^(\{.*\"online\".*\})$").group(1))["forwarding"], proc.pid

        def cpu(*pids: int) -> list[float]:
            return [cpu_seconds(pid) for pid in pids]

        def per_unit(before: list[float], after: list[float], units: float) -> dict[str, float]:
            """CPU milliseconds the engine and the agent spent per unit of work (connection, request, MiB)."""
            spent = zip(("engine", "agent"), before, after, strict=True)
            return {name: round((b - a) * 1000 / units, 3) for name, a, b in spent}

        sink, sink_port = peer("sink")
        echo, echo_port = peer("echo")
        origin, origin_port = peer("origin")
        wsecho, wsecho_port = peer("wsecho")
        procs.append(wsecho)
        procs += [sink, echo, origin]
        sink_address, sink_agent = tunnel(sink_port, "--tcp")
        echo_address, echo_agent = tunnel(echo_port, "--tcp")
        http_url, http_agent = tunnel(origin_port, "--http")
        ws_url, _ = tunnel(wsecho_port, "--http")
        sink_tunnel = int(sink_address.rsplit(":", 1)[1])
        echo_tunnel = int(echo_address.rsplit(":", 1)[1])
        http_host = http_url.split("//", 1)[1]

        bulk(sink_tunnel, 64 * CHUNK)  # warm up
        direct_bulk = max(bulk(sink_port, total) for _ in range(2))
        before = cpu(engine.pid, sink_agent)
        tunnel_bulk = max(bulk(sink_tunnel, total) for _ in range(2))
        results["bulk_MBps"] = {"direct": round(direct_bulk), "tunnel": round(tunnel_bulk),
                                "ratio": round(tunnel_bulk / direct_bulk, 3),
                                "cpu_ms_per_MiB": per_unit(before, cpu(engine.pid, sink_agent), 2 * total / CHUNK)}
        connections(echo_tunnel, 200)
        direct_conn = connections(echo_port, args.conns)
        before = cpu(engine.pid, echo_agent)
        tunnel_conn = connections(echo_tunnel, args.conns)
        results["new_connections"] = {"direct": {k: round(v, 2) for k, v in direct_conn.items()},
                                      "tunnel": {k: round(v, 2) for k, v in tunnel_conn.items()},
                                      "ratio": round(tunnel_conn["conn_per_s"] / direct_conn["conn_per_s"], 3),
                                      "cpu_ms_per_conn": per_unit(before, cpu(engine.pid, echo_agent), args.conns)}
        if shutil.which("wrk"):
            direct_http = wrk(f"http://127.0.0.1:{origin_port}/", args.wrk_seconds)
            before = cpu(engine.pid, http_agent)
            tunnel_http = wrk(f"https://127.0.0.1:{engine_port}/", args.wrk_seconds, host=http_host)
            requests_k = tunnel_http * args.wrk_seconds / 1000
            results["http_keepalive_rps"] = {
                "direct": round(direct_http), "tunnel": round(tunnel_http),
                "ratio": round(tunnel_http / direct_http, 3), "tool": "wrk -t1 -c32",
                "cpu_us_per_request": per_unit(before, cpu(engine.pid, http_agent), requests_k)}
        else:
            results["http_keepalive_rps"] = "skipped: wrk not installed (apt-get install wrk)"
        if shutil.which("h2load"):
            # The origin speaks HTTP/1.1 only: direct is h2load --h1 against it; the tunnel is HTTP/2 to the engine
            # (the engine turns each stream into an HTTP/1.1 request over pooled agent streams). 32 in flight both.
            direct_h1 = h2load(f"http://127.0.0.1:{origin_port}/", args.wrk_seconds, h1=True, clients=32, streams=1)
            before = cpu(engine.pid, http_agent)
            tunnel_h2 = h2load(f"https://{http_host}/", args.wrk_seconds,
                               connect_to=f"127.0.0.1:{engine_port}")
            results["http2_rps"] = {
                "direct_h1": round(direct_h1), "tunnel_h2": round(tunnel_h2), "ratio": round(tunnel_h2 / direct_h1, 3),
                "tool": "h2load -c4 -m8 (tunnel), --h1 -c32 (direct)",
                "cpu_us_per_request": per_unit(before, cpu(engine.pid, http_agent),
                                               tunnel_h2 * args.wrk_seconds / 1000)}
        else:
            results["http2_rps"] = "skipped: h2load not installed (apt-get install nghttp2-client)"
        visitor_tls = ssl.create_default_context(cafile=ca)
        ws_host = ws_url.split("//", 1)[1].rsplit(":", 1)[0]
        direct_ws = websocket(f"ws://127.0.0.1:{wsecho_port}/")
        tunnel_ws = websocket(f"wss://{ws_host}:{engine_port}/", ssl=visitor_tls, host="127.0.0.1", port=engine_port,
                              server_hostname=ws_host)
        results["websocket_echo"] = {"direct": direct_ws, "tunnel": tunnel_ws,
                                     "ratio_msgs": round(tunnel_ws["msgs_per_s"] / direct_ws["msgs_per_s"], 3)}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
