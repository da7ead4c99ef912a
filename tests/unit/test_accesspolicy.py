"""accesspolicy.py: project-wide rules for tunnel creation, visitors and TLS versions."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from portway.engine.accesspolicy import OPEN, CompiledPolicy, PolicyBook, PolicyDocument
from portway.wire.messages import TunnelProperties

WEB = TunnelProperties(protocol="http", publish=True, labels={"team": "a"})
PRIVATE = TunnelProperties(publish=False, name="db")


def compiled(**fields: object) -> CompiledPolicy:
    return CompiledPolicy.of(PolicyDocument.model_validate(fields))


def test_creation_rules() -> None:
    assert OPEN.refuse_tunnel(WEB) is None
    assert compiled(allow_public=False).refuse_tunnel(WEB) == "the project allows private tunnels only"
    assert compiled(allow_public=False).refuse_tunnel(PRIVATE) is None
    assert compiled(allowed_protocols=["tcp"]).refuse_tunnel(WEB) == "the project does not allow http tunnels"
    assert compiled(allowed_protocols=["tcp"]).refuse_tunnel(PRIVATE) is None  # private tunnels have no protocol
    assert compiled(required_labels={"team": None}).refuse_tunnel(WEB) is None
    assert compiled(required_labels={"team": "b"}).refuse_tunnel(WEB) == "the project requires the label team=b"
    assert compiled(required_labels={"env": None}).refuse_tunnel(PRIVATE) == "the project requires the label env"


def test_visitor_rules() -> None:
    def country_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        return "FR" if str(address).startswith("10.") else None

    policy = compiled(allowed_source_cidrs=["10.0.0.0/8"], allowed_countries=["fr"])
    assert policy.refuse_visitor(WEB, "10.1.2.3", country_of) is None
    assert policy.refuse_visitor(WEB, "::ffff:10.1.2.3", country_of) is None
    assert policy.refuse_visitor(WEB, "192.168.1.1", country_of) == "project_trusted_ips"
    assert policy.refuse_visitor(WEB, None, country_of) == "project_trusted_ips"
    assert compiled(allowed_countries=["DE"]).refuse_visitor(WEB, "10.1.2.3", country_of) == "project_geoip"
    assert compiled(allowed_countries=["FR"]).refuse_visitor(WEB, "10.1.2.3", None) == "project_geoip"
    # a tunnel the policy would not allow today (created before it changed) gets no new visitors
    assert compiled(allow_public=False).refuse_visitor(WEB, "10.1.2.3", country_of) == "project_policy"
    assert not OPEN.restricts_visitors and OPEN.refuse_visitor(WEB, "1.2.3.4", None) is None


@given(negotiated=st.sampled_from(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "", "SSLv3"]),
       minimum=st.sampled_from([None, "tls1.2", "tls1.3"]))
def test_tls_minimum(negotiated: str, minimum: str | None) -> None:
    order = {"TLSv1": 0, "TLSv1.1": 1, "TLSv1.2": 2, "TLSv1.3": 3}
    policy = compiled(min_tls_version=minimum)
    if minimum is None:
        assert not policy.tls_too_old(negotiated)
    else:
        wanted = {"tls1.2": 2, "tls1.3": 3}[minimum]
        assert policy.tls_too_old(negotiated) is (order.get(negotiated, -1) < wanted)


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"allowed_source_cidrs": ["10.0.0.0/33"]}, "is not a CIDR"),
    ({"allowed_countries": ["France"]}, "alpha-2"),
    ({"allowed_protocols": ["gopher"]}, "allowed_protocols"),
    ({"min_tls_version": "tls1.1"}, "min_tls_version"),
    ({"colour": "red"}, "colour"),
])
def test_bad_documents(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PolicyDocument.model_validate(fields)


def test_book() -> None:
    book = PolicyBook()
    assert book.get(None) is OPEN and book.get("other") is OPEN
    book.set("default", PolicyDocument(allow_public=False))
    assert book.get(None).refuse_tunnel(WEB) is not None and book.get("other") is OPEN
