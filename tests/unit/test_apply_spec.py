"""The `portway run --apply` file schema: what it accepts, what it sends, and how it names mistakes."""

from __future__ import annotations

import pytest

from portway.cli.applyspec import MANAGED_LABELS, parse_apply, parse_target
from portway.errors import ConfigError

GOOD = """
version: 1
tunnels:
  - name: web
    target: 8080
    labels: {team: blue}
    host: web.t.localhost
    trusted_ips: 10.0.0.0/8, 127.0.0.1
    geoip: [fr, de]
    token_auth: true
  - {name: db, target: "[::1]:5432", protocol: tcp, port: 20001}
  - {name: ssh, target: "host.internal:22", publish: false}
"""


def test_properties_sent_to_the_engine() -> None:
    specs = parse_apply(GOOD, "t.yaml")
    assert list(specs) == ["web", "db", "ssh"]
    web = specs["web"].properties()
    assert (web.name, web.protocol, web.hostname, web.token_auth) == ("web", "http", "web.t.localhost", True)
    assert web.labels == {"team": "blue", **MANAGED_LABELS}
    assert web.trusted_ips == ("10.0.0.0/8", "127.0.0.1") and web.geoip == ("FR", "DE")
    db = specs["db"]
    assert db.address == ("::1", 5432) and db.properties().port == 20001
    ssh = specs["ssh"].properties()
    assert ssh.protocol is None and ssh.publish is False and specs["ssh"].address == ("host.internal", 22)


def test_equal_files_give_equal_specs() -> None:
    assert parse_apply(GOOD, "a") == parse_apply(GOOD, "b")
    changed = parse_apply(GOOD.replace("team: blue", "team: red"), "a")
    assert changed["web"] != parse_apply(GOOD, "a")["web"] and changed["db"] == parse_apply(GOOD, "a")["db"]


@pytest.mark.parametrize("text", ["", "tunnels: []", "version: 1"])
def test_empty_files_declare_nothing(text: str) -> None:
    assert parse_apply(text, "t.yaml") == {}


@pytest.mark.parametrize(("text", "message"), [
    ("- 1", "t.yaml: expected a mapping"),
    ("version: 2", "t.yaml: key 'version'"),
    ("tunnel: []", "t.yaml: key 'tunnel': unknown key"),
    ("tunnels: [{target: 1}]", "tunnel #1: key 'name': Field required"),
    ("tunnels: [{name: a}]", "tunnel 'a': key 'target': Field required"),
    ("tunnels: [{name: a, target: 70000}]", "tunnel 'a': key 'target': invalid target 70000"),
    ("tunnels: [{name: a, target: 1, protocol: ftp}]", "tunnel 'a': key 'protocol'"),
    ("tunnels: [{name: a, target: 1, publish: false, trusted_ips: [10.0.0.1]}]", "tunnel 'a': private tunnels"),
    ("tunnels: [{name: a, target: 1, port: 20000}]", "port can be requested only for protocol=tcp"),
    ("tunnels: [{name: a, target: 1, trusted_ips: nonsense}]", "trusted_ips entry 'nonsense'"),
    ("tunnels: [{name: a, target: 1, labels: {rstream.managed-by: me}}]", "are set by portway run"),
    ("tunnels: [{name: a, target: 1}, {name: a, target: 2}]", "tunnel name 'a' is used twice"),
    ("tunnels: [", "t.yaml: not valid YAML at line"),
])
def test_mistakes_name_the_file_tunnel_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_apply(text, "t.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("value", "expected"), [
    (80, ("127.0.0.1", 80)), ("8080", ("127.0.0.1", 8080)), ("h:1", ("h", 1)), ("[::1]:2", ("::1", 2))])
def test_targets(value: object, expected: tuple[str, int]) -> None:
    assert parse_target(value) == expected


@pytest.mark.parametrize("value", [0, "x", "h:", True, None, "h:65536"])
def test_bad_targets(value: object) -> None:
    with pytest.raises(ValueError, match=r"target|PORT"):
        parse_target(value)
