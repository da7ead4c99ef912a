"""Engine configuration: the rstream-engine-ce YAML contract, extended for Portway.

Sources, lowest precedence first:

1. built-in defaults (see `describe_defaults()`);
2. a YAML file, from the `path` argument or `RSTREAM_ENGINE_CONFIG`;
3. environment overrides `RSTREAM_ENGINE_<SECTION>__<KEY>` (double underscore = nesting), e.g.
   `RSTREAM_ENGINE_TLS__LISTEN_ADDR=0.0.0.0:443` or `RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET=...`.

Environment values are parsed as YAML scalars (`true`, `30`, empty = null) except for text keys, which
take the value verbatim so that a secret such as `0123` or `yes` survives. Variables under the prefix
without a double underscore (`RSTREAM_ENGINE_CONFIG`, the clients' legacy `RSTREAM_ENGINE_ADDRESS`) are
not overrides and are ignored, unless they look like a mistyped override of a known section
(`RSTREAM_ENGINE_TLS_LISTEN_ADDR`).

Every problem surfaces as `ConfigError` naming the dotted key and where it came from. Loading reads the config
file and nothing else, never mutates its inputs and never exits.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from portway.errors import ConfigError

__all__ = [
    "ALL_KEYS",
    "CONFIG_ENV",
    "ENV_PREFIX",
    "AuthSection",
    "CertsSection",
    "EngineConfig",
    "EngineSection",
    "HttpSection",
    "JwtAuthSection",
    "LimitsSection",
    "MetricsSection",
    "PrometheusSection",
    "StaticCertsSection",
    "TcpSection",
    "TimeoutsSection",
    "TlsSection",
    "describe_defaults",
    "is_loopback_host",
    "load_config",
    "parse_config",
    "split_hostport",
]

ENV_PREFIX = "RSTREAM_ENGINE_"
CONFIG_ENV = "RSTREAM_ENGINE_CONFIG"

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


# ------------------------------------------------------------------------------------------------------------
# Value helpers


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_hostname(value: str) -> bool:
    name = value.lower().rstrip(".")
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def split_hostport(value: str) -> tuple[str, int]:
    """Split `host:port` into its parts; IPv6 hosts are bracketed (`[::1]:8443`), brackets are removed.

    An empty host (`:8443`, Go style) means every interface and is returned as "". Port 0 (ephemeral) is
    accepted. Raises ValueError with a short reason otherwise.
    """
    if not isinstance(value, str):
        raise ValueError("expected a 'host:port' string")
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unterminated '[' in address {value!r}")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {value!r} is missing ':port'")
        port_text = rest[1:]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"address {value!r}: only IPv6 addresses go inside brackets") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {value!r} is missing ':port'")
        if ":" in host:
            raise ValueError(f"address {value!r}: write IPv6 hosts in brackets, e.g. '[::1]:8443'")
        if host and not (_is_ip(host) or _is_hostname(host)):
            raise ValueError(f"address {value!r} has an invalid host")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError(f"address {value!r} has an invalid port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"address {value!r}: port must be within 0..65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals; an empty host (all interfaces) is not loopback."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_listen_addr(value: object) -> object:
    if isinstance(value, str):
        split_hostport(value)
    return value


def _check_host(value: object) -> object:
    if isinstance(value, str):
        host = value.strip()
        if not host:
            raise ValueError("must not be empty")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not (_is_ip(host) or _is_hostname(host)):
            raise ValueError("expected a DNS name or an IP address (no port, no scheme)")
        return host.lower().rstrip(".") if not _is_ip(host) else host
    return value


def _empty_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _normalise_log_level(value: object) -> object:
    if isinstance(value, str):
        level = value.strip().lower()
        return "warning" if level == "warn" else level
    return value


ListenAddr = Annotated[str, BeforeValidator(_check_listen_addr)]
Host = Annotated[str, BeforeValidator(_check_host)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_normalise_log_level)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------------------------
# Sections


class EngineSection(_Section):
    """Identity of the engine."""

    host: Host = Field(
        default="localhost",
        description="Public DNS name of the engine; tunnels are published under *.t.<host>.",
    )
    log_level: LogLevel = Field(default="info", description="debug, info, warn(ing) or error.")
    public_port: Port | None = Field(
        default=None,
        description="Port printed in public URLs (null = the TLS listen port), e.g. 443 behind a NAT.",
    )


class HttpSection(_Section):
    """Plain-HTTP listener for published HTTP tunnels."""

    enabled: bool = Field(default=False, description="Serve plain HTTP.")
    listen_addr: ListenAddr = Field(default="127.0.0.1:8080", description="host:port ([::1]:port for IPv6).")

    @property
    def address(self) -> tuple[str, int]:
        return split_hostport(self.listen_addr)


class TlsSection(_Section):
    """TLS listener: agents (ALPN rstrm/1), the engine API and published HTTPS/TLS tunnels."""

    enabled: bool = Field(default=True, description="Serve TLS.")
    listen_addr: ListenAddr = Field(default="127.0.0.1:8443", description="host:port ([::1]:port for IPv6).")

    @property
    def address(self) -> tuple[str, int]:
        return split_hostport(self.listen_addr)


class StaticCertsSection(_Section):
    """Operator-supplied certificate; when disabled the engine uses its own local CA (state directory)."""

    enabled: bool = Field(default=False, description="Use cert_file/key_file instead of the local CA.")
    cert_file: OptionalText = Field(default=None, description="PEM certificate chain (leaf first).")
    key_file: OptionalText = Field(default=None, description="PEM private key.")

    @model_validator(mode="after")
    def _files_when_enabled(self) -> StaticCertsSection:
        if self.enabled:
            missing = [name for name in ("cert_file", "key_file") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"enabled static certificates need {' and '.join(missing)}")
        return self


class CertsSection(_Section):
    """Certificates."""

    static: StaticCertsSection = Field(default_factory=StaticCertsSection)


class JwtAuthSection(_Section):
    """HS256 JWT admission of agents and API clients."""

    enabled: bool = Field(default=True, description="Require a valid token.")
    token_jwt_secret: OptionalText = Field(
        default=None,
        description="HS256 shared secret (null = generated once into the state directory).",
    )


class AuthSection(_Section):
    """Authentication."""

    jwt: JwtAuthSection = Field(default_factory=JwtAuthSection)


class PrometheusSection(_Section):
    """Prometheus scrape endpoint."""

    enabled: bool = Field(default=False, description="Serve metrics.")
    listen_addr: ListenAddr = Field(default="127.0.0.1:9090", description="host:port ([::1]:port for IPv6).")
    path: str = Field(default="/metrics", description="URL path of the scrape endpoint.")
    bearer_token: OptionalText = Field(
        default=None,
        description="Required Authorization bearer token; mandatory when listening on a non-loopback host.",
    )

    @property
    def address(self) -> tuple[str, int]:
        return split_hostport(self.listen_addr)

    @model_validator(mode="after")
    def _check(self) -> PrometheusSection:
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if self.enabled and self.bearer_token is None and not is_loopback_host(self.address[0]):
            raise ValueError("bearer_token is required when metrics listen on a non-loopback address")
        return self


class MetricsSection(_Section):
    """Metrics."""

    prometheus: PrometheusSection = Field(default_factory=PrometheusSection)


class TimeoutsSection(_Section):
    """Timeouts, in seconds (fractions allowed)."""

    stream_request_seconds: Seconds = Field(default=30, description="Wait for an agent to accept a stream.")
    http_idle_seconds: Seconds = Field(default=90, description="Idle keep-alive HTTP connections are closed.")
    first_message_seconds: Seconds = Field(
        default=10, description="Wait for the first message on a new agent connection."
    )
    heartbeat_timeout_seconds: Seconds = Field(default=30, description="Silence before an agent is dead.")
    shutdown_grace_seconds: Seconds = Field(default=10, description="Drain time on shutdown.")


class TcpSection(_Section):
    """Portway extension: published TCP tunnels get a port from this range."""

    enabled: bool = Field(default=True, description="Allow published TCP tunnels.")
    listen_host: Host = Field(default="127.0.0.1", description="Interface the published ports bind to.")
    port_min: Port = Field(default=20000, description="Lowest port handed out.")
    port_max: Port = Field(default=20999, description="Highest port handed out.")

    @model_validator(mode="after")
    def _range(self) -> TcpSection:
        if self.port_min > self.port_max:
            raise ValueError(f"port_min ({self.port_min}) must not exceed port_max ({self.port_max})")
        return self


class LimitsSection(_Section):
    """Portway extension: resource ceilings."""

    max_control_channels: Count = Field(default=1000, description="Concurrent agent connections.")
    max_tunnels_per_agent: Count = Field(default=100, description="Tunnels one agent connection may hold.")
    max_pending_streams: Count = Field(default=4096, description="Streams waiting for an agent to accept.")
    max_connections: Count = Field(
        default=10000, description="Connections between accept and routing (ClientHello + TLS handshake)."
    )


class EngineConfig(_Section):
    """The whole engine configuration (immutable)."""

    engine: EngineSection = Field(default_factory=EngineSection)
    http: HttpSection = Field(default_factory=HttpSection)
    tls: TlsSection = Field(default_factory=TlsSection)
    certs: CertsSection = Field(default_factory=CertsSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    timeouts: TimeoutsSection = Field(default_factory=TimeoutsSection)
    tcp: TcpSection = Field(default_factory=TcpSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)

    @property
    def advertised_port(self) -> int:
        """Port printed in public URLs: `engine.public_port`, else the TLS listen port (0 if ephemeral)."""
        if self.engine.public_port is not None:
            return self.engine.public_port
        return self.tls.address[1]

    @model_validator(mode="after")
    def _distinct_listeners(self) -> EngineConfig:
        seen: dict[tuple[str, int], str] = {}
        listeners = [
            ("http", self.http.enabled, self.http.listen_addr),
            ("tls", self.tls.enabled, self.tls.listen_addr),
            ("metrics.prometheus", self.metrics.prometheus.enabled, self.metrics.prometheus.listen_addr),
        ]
        for name, enabled, addr in listeners:
            if not enabled:
                continue
            host, port = split_hostport(addr)
            key = (host.lower(), port)
            if port and key in seen:
                raise ValueError(f"{name}.listen_addr is the same address as {seen[key]}.listen_addr")
            seen[key] = name
        return self


# ------------------------------------------------------------------------------------------------------------
# Schema walking


def _section_type(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_textual(annotation: object) -> bool:
    """True for leaves whose values are text (str, str | None, Literal of strings)."""
    if annotation is str:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(isinstance(arg, str) for arg in get_args(annotation))
    if origin is Union or origin is types.UnionType:
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return bool(args) and all(_is_textual(arg) for arg in args)
    return False


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, info in model.model_fields.items():
        sub = _section_type(info.annotation)
        keys.extend(_all_keys(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"])
    return keys


def _unknown(
    key: str, where: str, model: type[BaseModel], prefix: str, probe: str | None = None
) -> ConfigError:
    """`key` is the full dotted key reported; `probe` (default `key`) is the part matched against `model`."""
    candidates = [f"{prefix}{name}" for name in model.model_fields]
    close = difflib.get_close_matches(probe or key, candidates, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown configuration key '{key}' {where}{hint}")


def _check_file_tree(
    data: Mapping[Any, Any], model: type[BaseModel], prefix: str, where: str
) -> dict[str, Any]:
    """Copy `data` checking every key against the schema; a null section counts as empty."""
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = f"{prefix}{raw_key}"
        if not isinstance(raw_key, str) or raw_key not in model.model_fields:
            raise _unknown(key, where, model, prefix)
        sub = _section_type(model.model_fields[raw_key].annotation)
        if sub is None:
            out[raw_key] = copy.deepcopy(value)
        elif value is None:
            out[raw_key] = {}
        elif isinstance(value, Mapping):
            out[raw_key] = _check_file_tree(value, sub, f"{key}.", where)
        else:
            raise ConfigError(
                f"configuration key '{key}' {where} must be a mapping (a section), not a scalar"
            )
    return out


def _parse_env_value(raw: str, textual: bool) -> object:
    if not raw.strip():
        return None
    if textual:
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str], env_vars: dict[str, str]) -> None:
    """Merge overrides into `data` (our own copy); record dotted key -> variable name in `env_vars`."""
    sections = {name.lower() for name in EngineConfig.model_fields}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        where = f"(from environment variable {var})"
        if "__" not in rest:
            if rest in sections or any(rest.startswith(f"{s}_") for s in sections):
                raise ConfigError(
                    f"environment variable {var} is not a valid override: "
                    f"use a double underscore between section and key, e.g. RSTREAM_ENGINE_TLS__LISTEN_ADDR"
                )
            continue
        parts = rest.split("__")
        model: type[BaseModel] = EngineConfig
        node = data
        for depth, part in enumerate(parts):
            prefix = ".".join(parts[:depth])
            dotted = ".".join(parts[: depth + 1])
            if part not in model.model_fields:
                raise _unknown(".".join(parts), where, model, f"{prefix}." if prefix else "", dotted)
            annotation = model.model_fields[part].annotation
            sub = _section_type(annotation)
            last = depth == len(parts) - 1
            if sub is None:
                if not last:
                    raise ConfigError(f"unknown configuration key '{'.'.join(parts)}' {where}")
                node[part] = _parse_env_value(environ[var], _is_textual(annotation))
                env_vars[dotted] = var
            else:
                if last:
                    raise ConfigError(
                        f"configuration key '{dotted}' {where} is a section; set one of its keys instead"
                    )
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
                model = sub


def _format_validation(
    error: ValidationError, env_vars: Mapping[str, str], source: str | None
) -> ConfigError:
    """One ConfigError for all problems; values are never echoed (they may be secrets)."""
    problems: list[str] = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in item["loc"])
        key = loc or "(top level)"
        if loc in env_vars:
            where = f"(from environment variable {env_vars[loc]})"
        else:
            related = sorted(
                var for dotted, var in env_vars.items() if not loc or dotted.startswith(f"{loc}.")
            )
            origins = [f"in {source}"] if source else []
            if related:
                origins.append(f"environment: {', '.join(related)}")
            where = f"({'; '.join(origins or ['in the configuration'])})"
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"invalid value for '{key}' {where}: {reason}")
    return ConfigError("; ".join(problems))


def parse_config(
    data: object,
    environ: Mapping[str, str] | None = None,
    *,
    source: str | None = None,
) -> EngineConfig:
    """Validate an already-parsed document (a mapping, or None for empty) plus environment overrides.

    `source` names the document in error messages (e.g. "configuration file /etc/x.yaml").
    """
    label = source or "the configuration"
    where = f"(in {label})"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label} must be a YAML mapping of sections, not {type(data).__name__}")
    tree = _check_file_tree(data, EngineConfig, "", where)
    env_vars: dict[str, str] = {}
    _apply_env(tree, environ or {}, env_vars)
    try:
        return EngineConfig.model_validate(tree)
    except ValidationError as exc:
        raise _format_validation(exc, env_vars, source) from None


def load_config(path: str | None, environ: Mapping[str, str]) -> EngineConfig:
    """Load the configuration from `path` (else `RSTREAM_ENGINE_CONFIG`, else none) plus env overrides."""
    chosen = path if path else (environ.get(CONFIG_ENV) or None)
    data: object = None
    source: str | None = None
    if chosen is not None:
        source = f"configuration file {chosen}"
        try:
            with open(chosen, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ConfigError(f"{source} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"{source} cannot be read: {reason}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or "invalid YAML"
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{source} is not valid YAML{at}: {problem}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source} must be a YAML mapping of sections, not {type(data).__name__}")
    return parse_config(data, environ, source=source)


# ------------------------------------------------------------------------------------------------------------
# Defaults document


def _yaml_scalar(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _describe(model: type[BaseModel], instance: BaseModel, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for name, info in model.model_fields.items():
        sub = _section_type(info.annotation)
        if sub is not None:
            doc = (sub.__doc__ or "").strip().splitlines()
            if doc:
                lines.append(f"{pad}# {doc[0]}")
            lines.append(f"{pad}{name}:")
            _describe(sub, getattr(instance, name), indent + 1, lines)
            if indent == 0:
                lines.append("")
            continue
        if info.description:
            lines.append(f"{pad}# {info.description}")
        lines.append(f"{pad}{name}: {_yaml_scalar(getattr(instance, name))}")


def describe_defaults() -> str:
    """A commented YAML document listing every key with its default; loading it yields the defaults."""
    lines = [
        "# Portway engine configuration (compatible with rstream-engine-ce).",
        "# Every key is optional; the values below are the defaults.",
        "# Environment overrides: RSTREAM_ENGINE_<SECTION>__<KEY>, e.g. RSTREAM_ENGINE_TLS__LISTEN_ADDR.",
        "",
    ]
    _describe(EngineConfig, EngineConfig(), 0, lines)
    return "\n".join(lines)


ALL_KEYS: tuple[str, ...] = tuple(_all_keys(EngineConfig))
"""Every dotted leaf key, in schema order."""
