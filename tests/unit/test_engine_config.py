"""Engine configuration: CE-compatible YAML, env overrides, validation errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pydantic
import pytest
import yaml

from portway.engine.config import EngineConfig, is_loopback_host, split_hostport
from portway.engine.configfile import ALL_KEYS, describe_defaults, load_config, parse_config
from portway.errors import ConfigError

CE_YAML = """
engine:
  host: edge.example.com
  log_level: debug
http:
  enabled: true
  listen_addr: "0.0.0.0:80"
tls:
  enabled: true
  listen_addr: "0.0.0.0:443"
certs:
  static:
    enabled: true
    cert_file: /etc/rstream/tls.crt
    key_file: /etc/rstream/tls.key
auth:
  jwt:
    enabled: true
    token_jwt_secret: "change-me-to-a-long-random-secret-value"
metrics:
  prometheus:
    enabled: true
    listen_addr: "0.0.0.0:9100"
    path: /metrics
    bearer_token: scrape-token
timeouts:
  stream_request_seconds: 15
  http_idle_seconds: 120
"""


def write(tmp_path: Path, text: str, name: str = "engine.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_without_file() -> None:
    cfg = load_config(None, {})
    assert cfg == EngineConfig()
    assert cfg.engine.host == "localhost"
    assert cfg.engine.log_level == "info"
    assert cfg.engine.public_port is None
    assert (cfg.http.enabled, cfg.http.listen_addr) == (False, "127.0.0.1:8080")
    assert (cfg.tls.enabled, cfg.tls.listen_addr) == (True, "127.0.0.1:8443")
    assert cfg.certs.static.enabled is False
    assert cfg.certs.static.cert_file is None
    assert cfg.auth.jwt.enabled is True
    assert cfg.auth.jwt.token_jwt_secret is None
    prom = cfg.metrics.prometheus
    assert (prom.enabled, prom.listen_addr, prom.path, prom.bearer_token) == (
        False,
        "127.0.0.1:9090",
        "/metrics",
        None,
    )
    t = cfg.timeouts
    assert (
        t.stream_request_seconds,
        t.http_idle_seconds,
        t.first_message_seconds,
        t.heartbeat_timeout_seconds,
        t.shutdown_grace_seconds,
    ) == (30, 90, 10, 30, 10)
    assert (cfg.tcp.enabled, cfg.tcp.listen_host, cfg.tcp.port_min, cfg.tcp.port_max) == (
        True,
        "127.0.0.1",
        20000,
        20999,
    )
    lim = cfg.limits
    assert (
        lim.max_control_channels,
        lim.max_tunnels_per_agent,
        lim.max_pending_streams,
        lim.max_connections,
    ) == (1000, 100, 4096, 10000)
    assert cfg.advertised_port == 8443
    assert cfg.tls.address == ("127.0.0.1", 8443)


def test_frozen_and_extra_forbidden() -> None:
    cfg = EngineConfig()
    with pytest.raises(pydantic.ValidationError):
        cfg.engine.host = "other"
    with pytest.raises(pydantic.ValidationError):
        EngineConfig.model_validate({"engine": {"hots": "x"}})


def test_full_ce_yaml(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, CE_YAML), {})
    assert cfg.engine.host == "edge.example.com"
    assert cfg.engine.log_level == "debug"
    assert cfg.http.enabled is True
    assert cfg.http.address == ("0.0.0.0", 80)
    assert cfg.tls.listen_addr == "0.0.0.0:443"
    assert cfg.certs.static.cert_file == "/etc/rstream/tls.crt"
    assert cfg.certs.static.key_file == "/etc/rstream/tls.key"
    assert cfg.auth.jwt.token_jwt_secret == "change-me-to-a-long-random-secret-value"
    assert cfg.metrics.prometheus.bearer_token == "scrape-token"
    assert cfg.timeouts.stream_request_seconds == 15
    assert cfg.timeouts.http_idle_seconds == 120
    assert cfg.timeouts.first_message_seconds == 10  # untouched default
    assert cfg.advertised_port == 443


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "engine:\n  host: env.example.com\n")
    assert load_config(None, {"RSTREAM_ENGINE_CONFIG": path}).engine.host == "env.example.com"
    other = write(tmp_path, "engine:\n  host: arg.example.com\n", "other.yaml")
    assert load_config(other, {"RSTREAM_ENGINE_CONFIG": path}).engine.host == "arg.example.com"


def test_empty_file_and_null_sections(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), {}) == EngineConfig()
    assert load_config(write(tmp_path, "tls:\nhttp:\n"), {}) == EngineConfig()


def test_env_overrides_nested_and_coerced(tmp_path: Path) -> None:
    path = write(tmp_path, CE_YAML)
    env = {
        "RSTREAM_ENGINE_CONFIG": "/does/not/matter",
        "RSTREAM_ENGINE_ENGINE__HOST": "override.example.com",
        "RSTREAM_ENGINE_TLS__LISTEN_ADDR": "[::1]:9443",
        "RSTREAM_ENGINE_HTTP__ENABLED": "false",
        "RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET": "0123",
        "RSTREAM_ENGINE_AUTH__JWT__ENABLED": "true",
        "RSTREAM_ENGINE_TIMEOUTS__STREAM_REQUEST_SECONDS": "30",
        "RSTREAM_ENGINE_TIMEOUTS__HEARTBEAT_TIMEOUT_SECONDS": "0.5",
        "RSTREAM_ENGINE_TCP__PORT_MAX": "21000",
        "RSTREAM_ENGINE_ENGINE__PUBLIC_PORT": "443",
        "RSTREAM_ENGINE_ENGINE__LOG_LEVEL": "WARN",
        "RSTREAM_ENGINE": "edge.example.com:443",  # client variable, not an override
        "RSTREAM_ENGINE_ADDRESS": "legacy",  # legacy client variable, ignored
        "UNRELATED": "x",
    }
    before = copy.deepcopy(env)
    cfg = load_config(path, env)
    assert env == before  # inputs are not mutated
    assert cfg.engine.host == "override.example.com"
    assert cfg.tls.address == ("::1", 9443)
    assert cfg.http.enabled is False
    assert cfg.auth.jwt.token_jwt_secret == "0123"  # text keys are taken verbatim
    assert cfg.auth.jwt.enabled is True
    assert cfg.timeouts.stream_request_seconds == 30
    assert cfg.timeouts.heartbeat_timeout_seconds == 0.5
    assert cfg.tcp.port_max == 21000
    assert isinstance(cfg.tcp.port_max, int)
    assert cfg.engine.public_port == 443
    assert cfg.engine.log_level == "warning"
    assert cfg.metrics.prometheus.bearer_token == "scrape-token"  # file value kept


def test_env_overrides_without_file() -> None:
    cfg = load_config(None, {"RSTREAM_ENGINE_METRICS__PROMETHEUS__ENABLED": "yes"})
    assert cfg.metrics.prometheus.enabled is True


def test_env_empty_value_means_null(tmp_path: Path) -> None:
    path = write(tmp_path, "engine:\n  public_port: 443\n")
    cfg = load_config(path, {"RSTREAM_ENGINE_ENGINE__PUBLIC_PORT": ""})
    assert cfg.engine.public_port is None


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "tls:\n  listen_adr: 127.0.0.1:1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert "unknown configuration key 'tls.listen_adr'" in message
    assert path in message
    assert "tls.listen_addr" in message  # suggestion


def test_unknown_section_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration key 'quic'"):
        load_config(write(tmp_path, "quic:\n  enabled: true\n"), {})
    with pytest.raises(ConfigError, match=r"'certs\.static\.cert'"):
        load_config(write(tmp_path, "certs:\n  static:\n    cert: x\n"), {})


def test_unknown_key_in_env_is_named() -> None:
    var = "RSTREAM_ENGINE_TLS__LISTEN_ADR"
    with pytest.raises(ConfigError) as info:
        load_config(None, {var: "127.0.0.1:1"})
    assert "unknown configuration key 'tls.listen_adr'" in str(info.value)
    assert var in str(info.value)
    with pytest.raises(ConfigError, match=r"'auth\.jwt\.secret'.*RSTREAM_ENGINE_AUTH__JWT__SECRET"):
        load_config(None, {"RSTREAM_ENGINE_AUTH__JWT__SECRET": "x"})
    with pytest.raises(ConfigError, match=r"'nope\.key'"):
        load_config(None, {"RSTREAM_ENGINE_NOPE__KEY": "x"})
    with pytest.raises(ConfigError, match=r"'tls\.enabled\.deeper'"):
        load_config(None, {"RSTREAM_ENGINE_TLS__ENABLED__DEEPER": "x"})
    with pytest.raises(ConfigError, match=r"'auth\.jwt' .* is a section"):
        load_config(None, {"RSTREAM_ENGINE_AUTH__JWT": "x"})


def test_single_underscore_override_is_flagged() -> None:
    with pytest.raises(ConfigError, match="double underscore"):
        load_config(None, {"RSTREAM_ENGINE_TLS_LISTEN_ADDR": "127.0.0.1:1"})


def test_malformed_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "tls:\n  listen_addr: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+") as info:
        load_config(path, {})
    assert path in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="must be a YAML mapping") as info:
        load_config(path, {})
    assert path in str(info.value)


def test_section_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'tls'.*must be a mapping"):
        load_config(write(tmp_path, "tls: true\n"), {})


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path, {})
    assert path in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "key", "reason"),
    [
        ("tls:\n  listen_addr: '127.0.0.1'\n", "tls.listen_addr", "missing ':port'"),
        ("tls:\n  listen_addr: '::1:8443'\n", "tls.listen_addr", "brackets"),
        ("http:\n  listen_addr: 'host:99999'\n", "http.listen_addr", "port"),
        ("http:\n  listen_addr: 'host:http'\n", "http.listen_addr", "invalid port"),
        ("tcp:\n  port_min: 3000\n  port_max: 2000\n", "tcp", "port_min"),
        ("tcp:\n  port_max: 70000\n", "tcp.port_max", "less than or equal to 65535"),
        ("tcp:\n  port_min: 0\n", "tcp.port_min", "greater than or equal to 1"),
        ("timeouts:\n  http_idle_seconds: 0\n", "timeouts.http_idle_seconds", "greater than 0"),
        ("timeouts:\n  stream_request_seconds: -1\n", "timeouts.stream_request_seconds", "greater than 0"),
        ("limits:\n  max_connections: 0\n", "limits.max_connections", "greater than or equal to 1"),
        ("engine:\n  log_level: loud\n", "engine.log_level", "'debug'"),
        ("engine:\n  host: 'https://x.example'\n", "engine.host", "DNS name"),
        ("engine:\n  public_port: 0\n", "engine.public_port", "greater than or equal to 1"),
        ("tls:\n  enabled: maybe\n", "tls.enabled", "boolean"),
        ("auth:\n  jwt:\n    token_jwt_secret: 12345\n", "auth.jwt.token_jwt_secret", "string"),
        (
            "metrics:\n  prometheus:\n    enabled: true\n    listen_addr: '0.0.0.0:9100'\n",
            "metrics.prometheus",
            "bearer_token is required",
        ),
        ("metrics:\n  prometheus:\n    path: metrics\n", "metrics.prometheus", "start with '/'"),
        ("certs:\n  static:\n    enabled: true\n    cert_file: a.pem\n", "certs.static", "key_file"),
        ("certs:\n  static:\n    enabled: true\n", "certs.static", "cert_file and key_file"),
        ("http:\n  enabled: true\n  listen_addr: '127.0.0.1:8443'\n", "(top level)", "same address"),
    ],
)
def test_validation_errors_name_the_key(tmp_path: Path, yaml_text: str, key: str, reason: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert f"'{key}'" in message
    assert reason in message
    assert path in message


def test_validation_error_names_env_source_and_hides_value() -> None:
    var = "RSTREAM_ENGINE_TIMEOUTS__HTTP_IDLE_SECONDS"
    with pytest.raises(ConfigError) as info:
        load_config(None, {var: "soon"})
    assert "'timeouts.http_idle_seconds'" in str(info.value)
    assert var in str(info.value)
    assert "soon" not in str(info.value)


def test_metrics_on_loopback_need_no_token() -> None:
    for addr in ("127.0.0.1:9100", "[::1]:9100", "localhost:9100"):
        cfg = parse_config({"metrics": {"prometheus": {"enabled": True, "listen_addr": addr}}})
        assert cfg.metrics.prometheus.enabled
    with pytest.raises(ConfigError, match="bearer_token"):
        parse_config({"metrics": {"prometheus": {"enabled": True, "listen_addr": ":9100"}}})


def test_metrics_off_loopback_need_a_token(tmp_path: Path) -> None:
    for addr in ("0.0.0.0:9100", "10.0.0.5:9100", "[::]:9100", "metrics.example.com:9100"):
        for token in (None, "", "   "):
            section: dict[str, object] = {"enabled": True, "listen_addr": addr, "bearer_token": token}
            with pytest.raises(ConfigError, match="bearer_token is required"):
                parse_config({"metrics": {"prometheus": section}})
    # disabled, nothing is served: no token needed
    parse_config({"metrics": {"prometheus": {"enabled": False, "listen_addr": "0.0.0.0:9100"}}})
    # the token may come from the environment, and then never appears in errors about other keys
    path = write(tmp_path, "metrics:\n  prometheus:\n    enabled: true\n    listen_addr: '0.0.0.0:9100'\n")
    with pytest.raises(ConfigError, match="bearer_token is required"):
        load_config(path, {})
    env = {"RSTREAM_ENGINE_METRICS__PROMETHEUS__BEARER_TOKEN": "env-scrape-token"}
    assert load_config(path, env).metrics.prometheus.bearer_token == "env-scrape-token"
    with pytest.raises(ConfigError) as info:
        load_config(path, {**env, "RSTREAM_ENGINE_METRICS__PROMETHEUS__PATH": "metrics"})
    assert "env-scrape-token" not in str(info.value)


def test_metrics_must_not_share_the_tls_address() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.prometheus\.listen_addr is the same address as tls"):
        parse_config({"metrics": {"prometheus": {"enabled": True, "listen_addr": "127.0.0.1:8443"}}})
    # ephemeral ports never collide
    parse_config({"tls": {"listen_addr": "127.0.0.1:0"},
                  "metrics": {"prometheus": {"enabled": True, "listen_addr": "127.0.0.1:0"}}})


def test_accepted_listen_addresses() -> None:
    assert split_hostport("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert split_hostport("[::1]:8443") == ("::1", 8443)
    assert split_hostport("[::]:443") == ("::", 443)
    assert split_hostport(":443") == ("", 443)
    assert split_hostport("edge.example.com:0") == ("edge.example.com", 0)
    assert split_hostport("localhost:65535") == ("localhost", 65535)
    for bad in ("", "host", "[::1]", "[::1]8443", "[127.0.0.1]:80", "::1:80", "h:-1", "h:1x", "bad host:1"):
        with pytest.raises(ValueError):
            split_hostport(bad)


def test_loopback_detection() -> None:
    assert is_loopback_host("127.0.0.2")
    assert is_loopback_host("::1")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("")
    assert not is_loopback_host("0.0.0.0")
    assert not is_loopback_host("10.0.0.1")


def test_parse_config_does_not_mutate_input() -> None:
    data = {"engine": {"host": "Edge.Example.COM."}, "tls": None}
    before = copy.deepcopy(data)
    cfg = parse_config(data, {"RSTREAM_ENGINE_TLS__LISTEN_ADDR": "127.0.0.1:1"})
    assert data == before
    assert cfg.engine.host == "edge.example.com"
    assert cfg.tls.listen_addr == "127.0.0.1:1"


def test_describe_defaults_round_trips(tmp_path: Path) -> None:
    text = describe_defaults()
    assert text.lstrip().startswith("#")
    document = yaml.safe_load(text)
    assert parse_config(document) == EngineConfig()
    assert load_config(write(tmp_path, text), {}) == EngineConfig()
    flat: list[str] = []

    def walk(node: dict[str, object], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat.append(f"{prefix}{key}")

    walk(document, "")
    assert tuple(flat) == ALL_KEYS
    assert "token_jwt_secret: null" in text
    assert "stream_request_seconds: 30\n" in text


def test_http_serve_tunnels_from_file_and_environment(tmp_path: Path) -> None:
    """Portway's `http.serve_tunnels`: off by default, set in the file, and overridden from the environment."""
    assert EngineConfig().http.serve_tunnels is False
    assert "http.serve_tunnels" in ALL_KEYS
    assert "serve_tunnels: false" in describe_defaults()
    path = write(tmp_path, "http:\n  enabled: true\n  serve_tunnels: true\n")
    assert load_config(path, {}).http.serve_tunnels is True
    env = {"RSTREAM_ENGINE_HTTP__SERVE_TUNNELS": "false", "RSTREAM_ENGINE_HTTP__LISTEN_ADDR": "[::1]:8081"}
    cfg = load_config(path, env)
    assert (cfg.http.enabled, cfg.http.serve_tunnels, cfg.http.address) == (True, False, ("::1", 8081))
    with pytest.raises(ConfigError, match=r"'http\.serve_tunnels'.*RSTREAM_ENGINE_HTTP__SERVE_TUNNELS"):
        load_config(None, {"RSTREAM_ENGINE_HTTP__SERVE_TUNNELS": "sometimes"})
