"""What durable webhook recording costs a tunnel creation: the engine answers an agent only once the events its
action caused are stored for the endpoints that want them (docs/webhooks.md). Measured in one run, on the same
engine: tunnel creations with no endpoint (nothing is held) and with one endpoint subscribed to
`tunnel.created` (each answer waits for a commit), one at a time (latency) and many at once (group commit).

Run: python bench/webhook_recording.py [--tunnels 300] [--parallel 50] [--store-url postgresql://...]
The engine, the agent and the webhook receiver share one process and one loop, on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from portway.agent import Client, TLSOptions
from portway.agent.control import ControlChannel
from portway.engine import Engine
from portway.engine.auth import mint_token
from portway.engine.configfile import parse_config
from portway.engine.state import EngineState


async def receiver() -> tuple[asyncio.Server, int]:
    """A webhook receiver answering 200 to everything (the dispatcher runs during the measurement too)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def sequential(control: ControlChannel, count: int) -> list[float]:
    """Latency of `count` creations, one after another (each tunnel closed after)."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        tunnel = await control.create_tunnel(protocol="tcp")
        latencies.append(time.perf_counter() - started)
        await tunnel.close()
    return latencies


async def parallel(control: ControlChannel, count: int, width: int) -> float:
    """Creations per second with `width` in flight at once."""
    started = time.perf_counter()
    for offset in range(0, count, width):
        tunnels = await asyncio.gather(*(control.create_tunnel(protocol="tcp")
                                         for _ in range(min(width, count - offset))))
        await asyncio.gather(*(t.close() for t in tunnels))
    return count / (time.perf_counter() - started)


def describe(label: str, latencies: list[float], rate: float) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{label:<28} median {statistics.median(latencies) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
            f"parallel {rate:7.0f} creations/s")


async def main(tunnels: int, width: int, store_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as where:
        state = EngineState.open(Path(where) / "state", engine_host="localhost", jwt_secret=None)
        config = {"engine": {"host": "localhost"}, "tls": {"listen_addr": "127.0.0.1:0"},
                  "tcp": {"listen_host": "127.0.0.1"}, "limits": {"max_tunnels_per_agent": width * 2 + 10}}
        if store_url:
            config["store"] = {"url": store_url}
        engine = Engine(parse_config(config), state)
        await engine.start()
        server, port = await receiver()
        token = mint_token(state.jwt_secret, subject="bench", ttl_s=3600)
        base = f"https://127.0.0.1:{engine.port}"
        try:
            async with httpx.AsyncClient(base_url=base, verify=str(state.ca_path),
                                         headers={"authorization": f"Bearer {token}"}) as api:
                if (await api.get("/api/webhooks")).json():  # a reused database: "no endpoint" would be false
                    raise SystemExit("the store already has webhook endpoints: give the bench an empty database")
                control = await Client(f"127.0.0.1:{engine.port}", token,
                                       tls=TLSOptions(ca_file=str(state.ca_path))).connect()
                await sequential(control, 20)  # warm up
                bare = await sequential(control, tunnels), await parallel(control, tunnels, width)
                made = await api.post("/api/webhooks", json={"url": f"http://127.0.0.1:{port}/",
                                                             "events": ["tunnel.created"]})
                made.raise_for_status()
                try:
                    held = await sequential(control, tunnels), await parallel(control, tunnels, width)
                finally:
                    await api.delete(f"/api/webhooks/{made.json()['id']}")  # leave the database as it was
                await control.close()
        finally:
            server.close()
            await engine.stop()
    backend = "PostgreSQL" if store_url else "SQLite"
    print(f"tunnel creation, {tunnels} tunnels, {width} in flight for the parallel figure, store on {backend}")
    print(describe("no webhook endpoint", *bare))
    print(describe("one endpoint (held answers)", *held))
    print(f"ratio held/bare: median latency x{statistics.median(held[0]) / statistics.median(bare[0]):.2f}, "
          f"parallel rate x{held[1] / bare[1]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--store-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.tunnels, args.parallel, args.store_url))
