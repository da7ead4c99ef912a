"""What the Prometheus endpoint reports: one collector that reads the engine's live state at scrape time.

The hot paths only bump plain integers (`Counters`, the broker's stream counts, `Pipe.bytes_in`); this
module turns them into metric families when someone scrapes, so an engine nobody scrapes pays nothing.
Each engine gets its own `CollectorRegistry`: several engines share a process in tests, and the global
registry would mix them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from portway.engine.context import EngineContext

# Published protocols always reported (as 0 when none is live), so dashboards see a value, not a gap.
_SEEDED_TUNNELS = (("http", "true"), ("tls", "true"), ("tcp", "true"))


class EngineCollector(Collector):
    """Metric families computed from an `EngineContext` on each scrape."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        counters = ctx.counters
        yield InfoMetricFamily("portway_engine", "The engine's version.", value={"version": ctx.version})

        yield GaugeMetricFamily("portway_agents_connected", "Agents connected now (live control channels).",
                                value=len(ctx.sessions))
        yield CounterMetricFamily("portway_control_channels_opened", "Control channels accepted since start.",
                                  value=counters.control_channels)
        yield CounterMetricFamily("portway_rejected_connections",
                                  "Connections refused: over the connection limit, not TLS or silent before "
                                  "the ClientHello, or an agent connection refused (token, limits, first frame).",
                                  value=counters.rejected_connections)

        tunnels = GaugeMetricFamily("portway_tunnels", "Live tunnels by protocol and whether they are published.",
                                    labels=["protocol", "publish"])
        by_kind: Counter[tuple[str, str]] = Counter(dict.fromkeys(_SEEDED_TUNNELS, 0))
        for tunnel in ctx.registry.tunnels():
            by_kind[(tunnel.props.protocol or "none", "true" if tunnel.props.publish else "false")] += 1
        for (protocol, publish), count in sorted(by_kind.items()):
            tunnels.add_metric([protocol, publish], count)
        yield tunnels

        broker = ctx.broker
        yield CounterMetricFamily("portway_streams_opened", "Streams established (visitor or dialer spliced to an "
                                  "agent's data connection).", value=broker.streams_opened)
        yield CounterMetricFamily("portway_streams_failed", "Streams that got no data connection: the agent "
                                  "refused, did not answer in time, or too many were pending.",
                                  value=broker.streams_failed)
        yield GaugeMetricFamily("portway_streams_active", "Established streams whose visitor connection is open.",
                                value=ctx.streams.active)
        yield GaugeMetricFamily("portway_streams_pending", "Streams waiting for the agent's data connection.",
                                value=broker.pending)

        live_from, live_to = ctx.streams.live_bytes()
        yield CounterMetricFamily("portway_visitor_received_bytes", "Bytes received from visitors and dialers "
                                  "on established streams (after TLS termination where the engine terminates).",
                                  value=counters.bytes_from_visitors + live_from)
        yield CounterMetricFamily("portway_visitor_sent_bytes", "Bytes received from agents for visitors and "
                                  "dialers on established streams.", value=counters.bytes_to_visitors + live_to)

        responses = CounterMetricFamily("portway_http_responses", "HTTP responses sent to visitors, by status "
                                        "code (the upstream's, or the edge's own error pages).", labels=["code"])
        for code, count in sorted(counters.http_responses.items()):
            responses.add_metric([str(code)], count)
        yield responses

        denials = CounterMetricFamily("portway_policy_denials", "Visitors refused by a tunnel's edge policy, by "
                                      "tunnel protocol and reason.", labels=["protocol", "reason"])
        for (protocol, reason), count in sorted(counters.policy_denials.items()):
            denials.add_metric([protocol, reason], count)
        yield denials


def engine_registry(ctx: EngineContext) -> CollectorRegistry:
    """A registry of this engine's metrics plus the standard `process_*` ones (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(ctx))
    ProcessCollector(registry=registry)
    return registry
