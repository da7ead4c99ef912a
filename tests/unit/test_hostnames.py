"""Engine-owned published hostnames: both accepted shapes, rejections, allocation."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.wire.hostnames import allocate, is_engine_hostname, tunnel_suffix

FAST = settings(max_examples=40, deadline=None, database=None, derandomize=True)


@pytest.mark.parametrize(
    ("host", "suffix"),
    [
        ("localhost", "t.localhost"),
        ("Edge.Example.COM", "t.edge.example.com"),
        ("example.com.", "t.example.com"),
    ],
)
def test_tunnel_suffix(host: str, suffix: str) -> None:
    assert tunnel_suffix(host) == suffix


@pytest.mark.parametrize(
    ("hostname", "host"),
    [
        # The engine's own shape, <label>.t.<host>.
        ("abc.t.localhost", "localhost"),
        ("0123456789.t.localhost", "localhost"),
        ("a.t.localhost", "localhost"),
        ("my-app.t.edge.example.com", "edge.example.com"),
        ("ABC.T.LocalHost.", "localhost"),
        ("abc.t.localhost", "LOCALHOST."),
        ("a" * 63 + ".t.localhost", "localhost"),
        # What rstream clients generate: r<8 hex>-<first label>.t.<rest of host>.
        ("r1234abcd-edge.t.example.com", "edge.example.com"),
        ("R1234ABCD-EDGE.t.example.com", "edge.example.com"),
        ("r00000000-edge.t.example.com.", "Edge.Example.com"),
        ("r1234abcd-my-engine.t.a.b.example", "my-engine.a.b.example"),
    ],
)
def test_accepted(hostname: str, host: str) -> None:
    assert is_engine_hostname(hostname, host)


@pytest.mark.parametrize(
    ("hostname", "host"),
    [
        # wrong zone
        ("abc.t.other", "localhost"),
        ("abc.localhost", "localhost"),
        ("abc.x.localhost", "localhost"),
        ("abc.t.localhost.evil.com", "localhost"),
        ("abc.t.example.com", "edge.example.com"),
        ("a.b.t.localhost", "localhost"),
        ("t.localhost", "localhost"),
        ("localhost", "localhost"),
        ("", "localhost"),
        # bad label
        (".t.localhost", "localhost"),
        ("-abc.t.localhost", "localhost"),
        ("abc-.t.localhost", "localhost"),
        ("a_b.t.localhost", "localhost"),
        ("a b.t.localhost", "localhost"),
        ("é.t.localhost", "localhost"),
        ("*.t.localhost", "localhost"),
        ("a" * 64 + ".t.localhost", "localhost"),
        # CLI shape, but wrong
        ("r1234abcd-other.t.example.com", "edge.example.com"),
        ("r1234abcd-edge.t.other.com", "edge.example.com"),
        ("r1234abc-edge.t.example.com", "edge.example.com"),
        ("r1234abcde-edge.t.example.com", "edge.example.com"),
        ("r1234abcg-edge.t.example.com", "edge.example.com"),
        ("x1234abcd-edge.t.example.com", "edge.example.com"),
        ("r1234abcd_edge.t.example.com", "edge.example.com"),
        ("r1234abcd-edgex.t.example.com", "edge.example.com"),
        # only the exact first label: this is what host foo-edge.example.com generates
        ("r1234abcd-foo-edge.t.example.com", "edge.example.com"),
        ("r1234abcd--edge.t.example.com", "edge.example.com"),
        # CLI shape is not for single-label hosts or IP literals
        ("r1234abcd-localhost.t", "localhost"),
        ("r1234abcd-10.t.0.0.1", "10.0.0.1"),
        ("r1234abcd-127.t.0.0.1", "127.0.0.1"),
        ("r1234abcd-1.t.2.3.4", "1.2.3.4"),
    ],
)
def test_rejected(hostname: str, host: str) -> None:
    assert not is_engine_hostname(hostname, host)


def test_engines_sharing_a_parent_domain_do_not_claim_each_others_names() -> None:
    ours, theirs = "edge.example.com", "foo-edge.example.com"
    generated_for_theirs = "r0badcafe-foo-edge.t.example.com"
    assert is_engine_hostname(generated_for_theirs, theirs)
    assert not is_engine_hostname(generated_for_theirs, ours)
    generated_for_ours = "r0badcafe-edge.t.example.com"
    assert is_engine_hostname(generated_for_ours, ours)
    assert not is_engine_hostname(generated_for_ours, theirs)


_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
labels = st.one_of(
    st.sampled_from(_ALNUM),
    st.builds(
        lambda first, middle, last: first + middle + last,
        st.sampled_from(_ALNUM),
        st.text(alphabet=_ALNUM + "-", max_size=12),
        st.sampled_from(_ALNUM),
    ),
)
slugs = st.integers(0, 2**32 - 1).map(lambda n: f"{n:08x}")


@FAST
@given(slug=slugs, host=st.lists(labels, min_size=2, max_size=4))
def test_generated_stable_domains_are_accepted(slug: str, host: list[str]) -> None:
    """The client rule of §2.5, applied to any multi-label DNS host, yields a name the engine owns."""
    engine_host = ".".join(host)
    first, rest = host[0], ".".join(host[1:])
    hostname = f"r{slug}-{first}.t.{rest}"
    assert is_engine_hostname(hostname, engine_host)
    assert is_engine_hostname(hostname.upper(), engine_host)
    assert not is_engine_hostname(f"r{slug}-x{first}.t.{rest}", engine_host)


@FAST
@given(label=labels, host=st.lists(labels, min_size=1, max_size=3))
def test_own_shape_is_accepted(label: str, host: list[str]) -> None:
    engine_host = ".".join(host)
    assert is_engine_hostname(f"{label}.t.{engine_host}", engine_host)
    assert not is_engine_hostname(f"{label}.u.{engine_host}", engine_host)


# ---- allocate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "edge.example.com", "Edge.Example.COM."])
def test_allocate_shape(host: str) -> None:
    name = allocate(host)
    assert re.fullmatch(rf"[0-9a-f]{{10}}\.{re.escape(tunnel_suffix(host))}", name)
    assert is_engine_hostname(name, host)


def test_allocate_is_unique() -> None:
    names = {allocate("localhost") for _ in range(200)}
    assert len(names) == 200
    assert all(name.endswith(".t.localhost") for name in names)


def test_allocate_skips_taken_names(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: Iterator[str] = iter(["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    taken = {"aaaaaaaaaa.t.localhost", "bbbbbbbbbb.t.localhost"}
    assert allocate("localhost", taken) == "cccccccccc.t.localhost"


def test_allocate_uses_ten_hex_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []

    def token_hex(n: int) -> str:
        sizes.append(n)
        return "0" * (2 * n)

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    assert allocate("localhost") == "0000000000.t.localhost"
    assert sizes == [5]
