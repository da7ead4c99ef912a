"""The `portway run --apply` file: a YAML list of tunnels, validated before anything is sent.

    version: 1                    # optional; 1 is the only version
    tunnels:
      - name: web                 # required, unique: the key that --watch reconciles by
        target: 8080              # [host:]port of the local service (host defaults to 127.0.0.1)
        protocol: http            # http | tls | tcp | dtls | quic; default http when published
        labels: {team: web}
        host: web.t.edge.example.com   # requested stable hostname
        token_auth: true          # ...and every other edge option TunnelProperties carries
      - name: ssh
        target: 22
        publish: false            # private: reached with `portway nc rstrm://ssh`

Pure: parsing and validation only (no I/O beyond the caller's text), so it is unit-tested on its own. Each
tunnel is also checked with the engine's own rules (`wire.properties.normalize`), so a mistake is reported
here, naming the file, the tunnel and the key, instead of as an engine refusal after connecting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from portway.errors import ConfigError
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties
from portway.wire.properties import normalize

MANAGED_LABELS = {"rstream.managed-by": "run", "rstream.source": "apply"}
"""Injected into every applied tunnel (rstream's convention), so inventories can tell who owns it."""


def parse_target(value: object) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[V6]:PORT` as (host, port); host defaults to 127.0.0.1."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected PORT or HOST:PORT")
    host, _, port = str(value).strip().rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid target {value!r}: use PORT or HOST:PORT with a port in 1-65535")
    return host.strip("[]") or "127.0.0.1", int(port)


def _target(value: object) -> str:
    host, port = parse_target(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listify(value: object) -> object:
    """Accept `a, b` as well as a YAML list for list-valued options, as the CLI flags do."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Target = Annotated[str, BeforeValidator(_target)]
Names = Annotated[tuple[str, ...], BeforeValidator(_listify)]


class TunnelSpec(BaseModel):
    """One declared tunnel; field names are the TunnelProperties ones, except `host` (the requested hostname)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    target: Target
    protocol: Literal["http", "tls", "tcp", "dtls", "quic"] | None = None
    type: Literal["bytestream", "datagram"] | None = None
    publish: bool = True
    labels: dict[str, str] = Field(default_factory=dict)
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    trusted_ips: Names = ()
    geoip: Names = ()
    tls_mode: Literal["terminated", "passthrough"] | None = None
    tls_alpns: Names = ()
    tls_min_version: Literal["tls1.2", "tls1.3"] | None = None
    tls_ciphers: Names = ()
    mtls_auth: bool | None = None
    mtls_cacert_pem: str | None = None
    http_version: Literal["http/1.1", "h2c", "h3"] | None = None
    http_use_tls: bool | None = None
    upstream_tls: bool | None = None
    token_auth: bool | None = None
    rstream_auth: bool | None = None
    challenge_mode: bool | None = None
    datagram_guaranteed_delivery: bool | None = None
    allow_cross_region_routing: bool | None = None

    @model_validator(mode="after")
    def _engine_rules(self) -> TunnelSpec:
        reserved = sorted(set(self.labels) & set(MANAGED_LABELS))
        if reserved:
            raise ValueError(f"labels {', '.join(reserved)} are set by portway run")
        try:
            normalize(self.properties())
        except InvalidTunnelProperties as error:
            raise ValueError(str(error)) from None
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_target(self.target)

    def properties(self) -> TunnelProperties:
        """What is sent to the engine: the declared options plus the managed-by labels."""
        fields = self.model_dump(exclude={"name", "target", "host", "protocol", "labels", "geoip"})
        protocol = self.protocol or ("http" if self.publish else None)
        return TunnelProperties(name=self.name, protocol=protocol, hostname=self.host,
                                labels={**self.labels, **MANAGED_LABELS},
                                geoip=tuple(code.upper() for code in self.geoip), **fields)


class ApplyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    tunnels: tuple[TunnelSpec, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> ApplyFile:
        seen: set[str] = set()
        for spec in self.tunnels:
            if spec.name in seen:
                raise ValueError(f"tunnel name {spec.name!r} is used twice")
            seen.add(spec.name)
        return self


def _where(loc: tuple[int | str, ...], data: object) -> str:
    """`tunnel 'web': key 'protocol'` for ('tunnels', 0, 'protocol'), naming the tunnel when it has a name."""
    if len(loc) >= 2 and loc[0] == "tunnels" and isinstance(loc[1], int):
        items = data.get("tunnels") if isinstance(data, dict) else None
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        tunnel = f"tunnel {name!r}" if isinstance(name, str) else f"tunnel #{loc[1] + 1}"
        key = ".".join(str(part) for part in loc[2:])
        return f"{tunnel}: key '{key}'" if key else tunnel
    key = ".".join(str(part) for part in loc)
    return f"key '{key}'" if key else "top level"


def _reason(kind: str, message: str) -> str:
    if kind == "extra_forbidden":
        return "unknown key"
    return message.removeprefix("Value error, ")


def parse_apply(text: str, source: str) -> dict[str, TunnelSpec]:
    """Validate an apply file; tunnels by name, in file order. Raises one-line `ConfigError`s naming `source`."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{at}: {getattr(error, 'problem', None) or 'syntax'}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'tunnels' list, not {type(data).__name__}")
    try:
        parsed = ApplyFile.model_validate(data)
    except ValidationError as error:
        problems = [f"{_where(item['loc'], data)}: {_reason(item['type'], item['msg'])}"
                    for item in error.errors(include_url=False, include_input=False)]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
    return {spec.name: spec for spec in parsed.tunnels}
