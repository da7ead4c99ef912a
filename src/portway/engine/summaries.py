"""`stream.summary` objects (§4.2), sans-IO: what one visitor stream was — who came, what the firewall
decided, where it was routed, how it ended — for signaling watches that opt in with `summaries: true`.

Edges pay for this only while such a watch exists (`EngineContext.summary_watchers`): they then fill a
`Draft` as facts become known, and `summarize` turns it into the object when the stream ends. The object is
built as plain JSON data (validating nested pydantic models cost four times more per summary); the models
below are its schema, which the tests hold every summary to.

Credentials never leave the engine through a summary: the values of `Authorization`, `Proxy-Authorization`,
`Cookie` and `Set-Cookie`, and of any `rstream.token` query parameter, are replaced by `REDACTED`; headers
are a bounded subset, so a visitor cannot make a summary (and every watch's buffer) large.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict

from portway.engine import policy

if TYPE_CHECKING:
    from portway.engine.registry import Tunnel

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
TOKEN_PARAM = policy.TOKEN_PARAM.decode()
MAX_HEADERS = 32
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 256
MAX_PATH_CHARS = 1024
MAX_QUERY_CHARS = 1024

# Edge policy reasons (policy.py, count_denial) → the summary's firewall rule kinds.
RULES = {"trusted_ips": "ip", "geoip": "geo", "token_auth": "token", "mtls_auth": "mtls",
         # the project's access policy (accesspolicy.py): its network rules, or the tunnel no longer allowed
         "project_trusted_ips": "ip", "project_geoip": "geo", "project_policy": "policy",
         "project_min_tls_version": "policy"}

RuleKind = Literal["none", "mtls", "token", "ip", "geo", "policy"]
FailureKind = Literal["timeout", "unauthorized", "not_found", "refused", "io", "internal"]
By = Literal["visitor", "agent", "engine"]
HttpProtocol = Literal["http/1.1", "h2"]


# ---- the schema ----


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Geolocation(_Shape):
    country: str | None = None


class DownstreamTls(_Shape):
    version: str | None = None
    cipher: str | None = None
    protocol: str | None = None  # the ALPN protocol chosen
    curve: str | None = None  # not exposed by Python's ssl module before 3.13: left empty


class Downstream(_Shape):
    ip: str | None = None
    geolocation: Geolocation = Geolocation()
    tls: DownstreamTls | None = None


class HttpRequest(_Shape):
    method: str
    scheme: str
    host: str
    path: str
    query: str
    url: str
    headers: dict[str, str]
    userAgent: str | None = None  # rstream's spelling


class HttpInfo(_Shape):
    protocol: HttpProtocol
    request: HttpRequest


class RequestInfo(_Shape):
    downstream: Downstream
    http: HttpInfo | None = None


class Failure(_Shape):
    kind: FailureKind
    reason: str | None = None


class Rule(_Shape):
    kind: RuleKind


class Firewall(_Shape):
    decision: Literal["allowed", "denied"]
    rule: Rule
    failure: Failure | None = None


class TunnelRef(_Shape):
    id: str
    name: str | None = None
    protocol: str | None = None
    hostname: str | None = None
    labels: dict[str, str] = {}


class Routed(_Shape):
    tunnel: TunnelRef


class NotRouted(_Shape):
    failure: Failure


class Routing(_Shape):
    routed: Routed | None = None
    not_routed: NotRouted | None = None


class Metrics(_Shape):
    establish_ms: float | None = None
    duration_ms: float
    upstream_bytes: int  # from the visitor towards the agent
    downstream_bytes: int  # from the agent towards the visitor


class Termination(_Shape):
    by: By
    reason: str | None = None


class HttpResponse(_Shape):
    status: int
    headers: dict[str, str] = {}


class HttpResponseInfo(_Shape):
    response: HttpResponse


class ResponseInfo(_Shape):
    outcome: Literal["connected", "failed"]
    metrics: Metrics
    termination: Termination
    http: HttpResponseInfo | None = None


class StreamSummary(_Shape):
    stream_id: str
    tunnel_id: str | None = None
    client_id: str | None = None
    created_at: str
    terminated_at: str
    request: RequestInfo
    firewall: Firewall
    routing: Routing
    response: ResponseInfo


# ---- facts, gathered by the edges ----


class SSLFacts(Protocol):
    """What is read from a terminated TLS connection (an `ssl.SSLObject`)."""

    def version(self) -> str | None: ...

    def cipher(self) -> tuple[str, str, int] | None: ...

    def selected_alpn_protocol(self) -> str | None: ...


def _present(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def downstream(ip: str | None, country: str | None, ssl_object: SSLFacts | None) -> dict[str, Any]:
    """The visitor: address, country, and TLS parameters when the engine terminated its TLS (not for
    passthrough or TCP)."""
    out: dict[str, Any] = _present({"ip": ip, "geolocation": _present({"country": country})})
    if ssl_object is not None:
        cipher = ssl_object.cipher()
        out["tls"] = _present({"version": ssl_object.version(), "cipher": cipher[0] if cipher else None,
                               "protocol": ssl_object.selected_alpn_protocol()})
    return out


def redact_target(target: bytes) -> bytes:
    """A request target as logs show it: `redact_query` on its query (the path is kept byte for byte)."""
    path, sep, query = target.partition(b"?")
    if not sep:
        return target
    return path + b"?" + redact_query(query.decode("latin-1")).encode("latin-1")


def redact_query(query: str) -> str:
    """`query` with the value of every `rstream.token` parameter (however percent-encoded) replaced."""
    if not query:
        return query
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        name, sep, _ = pair.partition("=")
        if unquote(name.replace("+", " ")) == TOKEN_PARAM:
            pairs[i] = f"{name}={REDACTED}" if sep else name
    return "&".join(pairs)


def header_subset(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """At most `MAX_HEADERS` headers (names lowercased, values cut), secrets redacted; repeats joined."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.strip().lower()[:MAX_NAME_CHARS]
        value = REDACTED if name in SECRET_HEADERS else raw_value.strip()[:MAX_VALUE_CHARS]
        if name in out:
            if name not in SECRET_HEADERS:
                out[name] = f"{out[name]}, {value}"[:MAX_VALUE_CHARS]
        elif len(out) < MAX_HEADERS:
            out[name] = value
    return out


def http_request(method: str, scheme: str, host: str, target: str,
                 headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The request part of a summary, from the visitor's request as received (before the edge removed a
    token_auth credential): target split into path and redacted query."""
    path, _, query = target.partition("?")
    path, query = path[:MAX_PATH_CHARS], redact_query(query[:MAX_QUERY_CHARS])
    subset = header_subset(headers)
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    return _present({"method": method, "scheme": scheme, "host": host, "path": path, "query": query, "url": url,
                     "headers": subset, "userAgent": subset.get("user-agent")})


def h1_headers(lines: Iterable[bytes]) -> Iterable[tuple[str, str]]:
    """(name, value) of HTTP/1.1 header lines as the edge keeps them (`Name: value\\r\\n`)."""
    for line in lines:
        name, _, value = line.partition(b":")
        yield name.decode("latin-1"), value.decode("latin-1")


def h2_headers(headers: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[str, str]]:
    for name, value in headers:
        yield name.decode("latin-1"), value.decode("latin-1")


def rule_of(tunnel: Tunnel) -> RuleKind:
    """The control that admitted a visitor to `tunnel` (the strongest it has), or "none"."""
    policy = tunnel.policy
    if policy is not None:
        if policy.token_auth:
            return "token"
        if policy.networks:
            return "ip"
        if policy.countries:
            return "geo"
    return "mtls" if tunnel.props.mtls_auth else "none"


def failure_of_status(status: int) -> FailureKind:
    """What an edge's own error page says about why the request went no further."""
    if status in (401, 403):
        return "unauthorized"
    if status in (404, 421):
        return "not_found"
    if status == 504:
        return "timeout"
    if status >= 500:
        return "refused" if status in (502, 503) else "internal"
    return "refused"


@dataclass(slots=True)
class Draft:
    """One stream's facts so far; the edges fill it in (only while a watch wants summaries)."""

    stream_id: str
    started: float  # on the edge's monotonic clock
    downstream: dict[str, Any]  # `downstream()`
    http: dict[str, Any] | None = None  # {"protocol", "request": `http_request()`}
    tunnel: Tunnel | None = None  # the tunnel the stream is (to be) routed to
    denied: str | None = None  # the policy reason (RULES key) that refused it
    established: float | None = None  # when the agent's side was ready (same clock as `started`)
    failure: FailureKind | None = None  # why it was not routed, when the edge knows better than a status
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a stream ended, as the edge saw it at the end."""

    ended: float  # same clock as `Draft.started`
    upstream_bytes: int
    downstream_bytes: int
    by: By
    reason: str | None = None
    status: int | None = None  # the HTTP status sent to the visitor (0 or None: none)
    routed: bool = True  # the agent's stream was obtained (False: refused, or failed before)
    failed: bool = False  # routed, but the exchange broke (the edge answered an error, or reset it)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def summarize(draft: Draft, outcome: Outcome, *, wall_now: float) -> dict[str, Any]:
    """The summary of a finished stream, as JSON data (`StreamSummary`'s shape, fields without a value left
    out); `wall_now` is the wall-clock time of `outcome.ended`."""
    tunnel = draft.tunnel
    duration_s = max(outcome.ended - draft.started, 0.0)
    status = outcome.status or None
    denied = RULES.get(draft.denied or "")
    if denied is not None:
        failure: dict[str, Any] | None = {"kind": "unauthorized", "reason": f"policy_denied {denied}"}
        firewall = {"decision": "denied", "rule": {"kind": denied}, "failure": failure}
    else:
        failure = None
        firewall = {"decision": "allowed", "rule": {"kind": rule_of(tunnel) if tunnel is not None else "none"}}
    if outcome.routed and tunnel is not None and denied is None:
        props = tunnel.props
        routing: dict[str, Any] = {"routed": {"tunnel": _present({
            "id": tunnel.id, "name": props.name, "protocol": props.protocol, "hostname": props.hostname,
            "labels": dict(props.labels)})}}
    else:
        kind = draft.failure or (failure["kind"] if failure else None) or \
            (failure_of_status(status) if status else "refused")
        routing = {"not_routed": {"failure": _present({"kind": kind, "reason": outcome.reason})}}
    metrics: dict[str, Any] = {"duration_ms": duration_s * 1000, "upstream_bytes": outcome.upstream_bytes,
                               "downstream_bytes": outcome.downstream_bytes}
    if draft.established is not None:
        metrics["establish_ms"] = max(draft.established - draft.started, 0.0) * 1000
    response: dict[str, Any] = {
        "outcome": "connected" if "routed" in routing and not outcome.failed else "failed",
        "metrics": metrics,
        "termination": _present({"by": outcome.by, "reason": outcome.reason}),
    }
    if status is not None and draft.http is not None:
        response["http"] = {"response": {"status": status, "headers": draft.response_headers}}
    request: dict[str, Any] = {"downstream": draft.downstream}
    if draft.http is not None:
        request["http"] = draft.http
    return _present({
        "stream_id": draft.stream_id,
        "tunnel_id": tunnel.id if tunnel is not None else None,
        "client_id": tunnel.owner.client_id if tunnel is not None else None,
        "created_at": _iso(wall_now - duration_s),
        "terminated_at": _iso(wall_now),
        "request": request,
        "firewall": firewall,
        "routing": routing,
        "response": response,
    })
