"""The stream summary builder (engine/summaries.py): credentials never survive redaction, headers stay
bounded, and every summary has the §4.2 shape whatever the facts."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from portway.engine import summaries as s
from portway.engine.auth import Principal
from portway.engine.policy import EdgePolicy
from portway.engine.registry import Tunnel
from portway.wire.messages import TunnelProperties

SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12)
SECRETS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=6, max_size=20).map(lambda v: f"SECRET{v}")
TOKEN_NAMES = st.sampled_from(["rstream.token", "rstream%2Etoken", "rstream%2etoken", "rstream.tok%65n"])


@dataclass
class Owner:
    """The session side of a tunnel, as far as a summary reads it."""

    client_id: str = "client-1"
    token_id: str = "tok"
    principal: Principal = field(default_factory=lambda: Principal("alice", "tok"))

    def request_stream(self, tunnel_id: str, stream_id: str, secret: str, source_ip: str | None) -> None:
        raise AssertionError("not used")

    def retire_tunnel(self, tunnel_id: str) -> None:
        raise AssertionError("not used")


def tunnel(policy: EdgePolicy | None = None, *, mtls: bool = False) -> Tunnel:
    props = TunnelProperties(id="tun-1", name="web", protocol="http", hostname="web.t.localhost",
                             labels={"env": "prod"}, mtls_auth=mtls)
    return Tunnel(props, Owner(), policy=policy)


@given(st.lists(st.tuples(SAFE, SAFE), max_size=6), st.lists(st.tuples(TOKEN_NAMES, SECRETS), min_size=1, max_size=3),
       st.randoms())
def test_query_tokens_are_redacted_and_other_parameters_kept(plain: list[tuple[str, str]],
                                                             tokens: list[tuple[str, str]], rnd: random.Random) -> None:
    pairs = [f"{k}={v}" for k, v in plain] + [f"{k}={quote(v)}" for k, v in tokens]
    rnd.shuffle(pairs)
    redacted = s.redact_query("&".join(pairs))
    assert "SECRET" not in redacted
    assert redacted.count(s.REDACTED) == len(tokens)
    for key, value in plain:
        assert f"{key}={value}" in redacted.split("&")


@given(st.lists(st.tuples(st.sampled_from(["Authorization", "cookie", "PROXY-AUTHORIZATION", "Set-Cookie"]),
                          SECRETS), min_size=1, max_size=4),
       st.lists(st.tuples(st.text(max_size=80), st.text(max_size=400)), max_size=60))
def test_header_subset_redacts_secrets_and_stays_bounded(secret: list[tuple[str, str]],
                                                         other: list[tuple[str, str]]) -> None:
    other = [(k, v) for k, v in other if k.strip().lower() not in s.SECRET_HEADERS]
    subset = s.header_subset(secret + other)
    assert len(subset) <= s.MAX_HEADERS
    assert all(len(k) <= s.MAX_NAME_CHARS and len(v) <= s.MAX_VALUE_CHARS for k, v in subset.items())
    for name, _ in secret:
        assert subset[name.lower()] == s.REDACTED
    assert not any("SECRET" in v for k, v in subset.items() if k in s.SECRET_HEADERS)


@given(SAFE, SECRETS, SECRETS)
def test_http_request_never_carries_the_credentials(path: str, header_secret: str, query_secret: str) -> None:
    request = s.http_request("GET", "https", "web.t.localhost", f"/{path}?rstream.token={query_secret}&a=b",
                             [("Authorization", f"Bearer {header_secret}"), ("User-Agent", "ua/1")])
    text = json.dumps(request)
    assert header_secret not in text and query_secret not in text
    assert request["url"] == f"https://web.t.localhost/{path}?rstream.token={s.REDACTED}&a=b"
    assert request["userAgent"] == "ua/1"
    s.HttpRequest.model_validate(request)


policies = st.none() | st.builds(EdgePolicy, token_auth=st.booleans(),
                                 countries=st.sampled_from([frozenset(), frozenset({"FR"})]))
outcomes = st.builds(
    s.Outcome, ended=st.floats(0, 1e6), upstream_bytes=st.integers(0, 2**40), downstream_bytes=st.integers(0, 2**40),
    by=st.sampled_from(["visitor", "agent", "engine"]), reason=st.none() | st.text(max_size=20),
    status=st.none() | st.sampled_from([0, 101, 200, 403, 404, 502, 504]), routed=st.booleans(), failed=st.booleans())


@given(outcome=outcomes, started=st.floats(0, 1e6), established=st.none() | st.floats(0, 1e6), routed=st.booleans(),
       policy=policies, denied=st.none() | st.sampled_from(sorted(s.RULES)), http=st.booleans())
def test_every_summary_has_the_shape(*, outcome: s.Outcome, started: float, established: float | None, routed: bool,
                                     policy: EdgePolicy | None, denied: str | None, http: bool) -> None:
    draft = s.Draft("stream-1", started, s.downstream("192.0.2.1", None, None),
                    tunnel=tunnel(policy) if routed else None, denied=denied, established=established)
    if http:
        draft.http = {"protocol": "h2", "request": s.http_request("GET", "https", "h", "/", [])}
    obj = s.summarize(draft, outcome, wall_now=1.8e9)
    again = s.StreamSummary.model_validate(obj)  # the JSON is the schema, nothing more
    assert again.model_dump(mode="json", exclude_none=True) == json.loads(json.dumps(obj))
    assert obj["created_at"] <= obj["terminated_at"]
    assert len(obj["routing"]) == 1
    metrics = obj["response"]["metrics"]
    assert metrics["duration_ms"] >= 0 and metrics.get("establish_ms", 0) >= 0
    if denied is not None:
        assert obj["firewall"]["decision"] == "denied" and obj["firewall"]["rule"]["kind"] == s.RULES[denied]
        assert "not_routed" in obj["routing"] and obj["response"]["outcome"] == "failed"
    if "routed" in obj["routing"]:
        assert obj["routing"]["routed"]["tunnel"]["id"] == obj["tunnel_id"] == "tun-1"
        assert obj["client_id"] == "client-1"
    assert ("http" in obj["response"]) == (http and bool(outcome.status))


def test_rule_is_the_strongest_control_of_the_tunnel() -> None:
    assert s.rule_of(tunnel()) == "none"
    assert s.rule_of(tunnel(mtls=True)) == "mtls"
    assert s.rule_of(tunnel(EdgePolicy(countries=frozenset({"FR"})))) == "geo"
    assert s.rule_of(tunnel(EdgePolicy(token_auth=True, countries=frozenset({"FR"})))) == "token"


def test_failure_kinds_of_edge_pages() -> None:
    assert [s.failure_of_status(c) for c in (401, 403, 404, 421, 502, 503, 504, 500, 400)] == [
        "unauthorized", "unauthorized", "not_found", "not_found", "refused", "refused", "timeout", "internal",
        "refused"]
