"""Project-wide access policies: what tunnels a project's agents may create, who may reach them, and the
oldest TLS a visitor may use on edge-terminated surfaces. Evaluated together with each tunnel's own
settings — both must admit, so the stricter wins. Pure: a `PolicyBook` holds the compiled policy of each
project in memory (the store persists them; api/admin routes replace them), and a replaced policy applies
to the next connection at once, also for tunnels created before it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from portway.engine.policy import CountryOf, IPNetwork, parse_address
from portway.wire.messages import TunnelProperties

DEFAULT_PROJECT = "default"
TLS_ORDER = {"tls1.0": 0, "tls1.1": 1, "tls1.2": 2, "tls1.3": 3}
_SSL_NAMES = {"TLSv1": "tls1.0", "TLSv1.1": "tls1.1", "TLSv1.2": "tls1.2", "TLSv1.3": "tls1.3"}
Protocol = Literal["http", "tls", "tcp", "dtls", "quic"]


class PolicyDocument(BaseModel):
    """The document an operator sets per project (`PUT /api/admin/projects/{id}/policy`)."""

    model_config = ConfigDict(extra="forbid")

    allow_public: bool = Field(default=True, description="Whether published (public) tunnels may be created at all")
    allowed_protocols: list[Protocol] | None = Field(default=None, description="Published protocols (null: any)")
    required_labels: dict[str, str | None] = Field(
        default_factory=dict, description="Labels every tunnel must carry: key → value, or null for any value")
    allowed_source_cidrs: list[str] | None = Field(default=None, description="Visitors' addresses allowed (null: any)")
    allowed_countries: list[str] | None = Field(default=None, description="Visitors' ISO countries allowed (null: any)")
    min_tls_version: Literal["tls1.2", "tls1.3"] | None = Field(
        default=None, description="Oldest TLS version for visitors of edge-terminated tunnels (http, terminated tls)")

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        networks = []
        for cidr in value:
            try:
                networks.append(str(ipaddress.ip_network(cidr, strict=False)))  # stored normalized
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR") from None
        return networks

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(len(c) == 2 and c.isalpha() for c in value):
            raise ValueError("countries are ISO 3166-1 alpha-2 codes, e.g. FR")
        return [c.upper() for c in value] if value is not None else None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """An `PolicyDocument` ready for the hot path; `open` policies cost one attribute check."""

    policy: PolicyDocument
    networks: tuple[IPNetwork, ...] | None
    countries: frozenset[str] | None
    restricts_visitors: bool

    @classmethod
    def of(cls, policy: PolicyDocument) -> CompiledPolicy:
        networks = tuple(ipaddress.ip_network(c, strict=False) for c in policy.allowed_source_cidrs) \
            if policy.allowed_source_cidrs is not None else None
        countries = frozenset(policy.allowed_countries) if policy.allowed_countries is not None else None
        restricts = networks is not None or countries is not None or not policy.allow_public \
            or policy.allowed_protocols is not None or bool(policy.required_labels)
        return cls(policy, networks, countries, restricts)

    def refuse_tunnel(self, props: TunnelProperties) -> str | None:
        """Why the project forbids a tunnel with `props` (creation, and its visitors later); None if allowed."""
        p = self.policy
        if props.publish:
            if not p.allow_public:
                return "the project allows private tunnels only"
            if p.allowed_protocols is not None and props.protocol not in p.allowed_protocols:
                return f"the project does not allow {props.protocol} tunnels"
        for key, value in p.required_labels.items():
            if key not in props.labels or (value is not None and props.labels[key] != value):
                return f"the project requires the label {key}" + (f"={value}" if value is not None else "")
        return None

    def refuse_visitor(self, props: TunnelProperties, source_ip: str | None, country_of: CountryOf | None,
                       ) -> str | None:
        """The project rule that refuses this visitor of a tunnel with `props`; None when admitted."""
        if not self.restricts_visitors:
            return None
        if self.refuse_tunnel(props) is not None:
            return "project_policy"  # a tunnel from before the policy changed: no new visitors
        if self.networks is None and self.countries is None:
            return None
        address = parse_address(source_ip)
        if self.networks is not None and (address is None or not any(address in n for n in self.networks)):
            return "project_trusted_ips"
        if self.countries is not None:
            country = country_of(address) if country_of is not None and address is not None else None
            if country is None or country.upper() not in self.countries:
                return "project_geoip"
        return None

    def tls_too_old(self, negotiated: str | None) -> bool:
        """Whether a visitor's TLS version (`ssl.SSLObject.version()`, e.g. "TLSv1.2") is below the minimum."""
        minimum = self.policy.min_tls_version
        if minimum is None:
            return False
        name = _SSL_NAMES.get(negotiated or "")
        return name is None or TLS_ORDER[name] < TLS_ORDER[minimum]


OPEN = CompiledPolicy.of(PolicyDocument())


class PolicyBook:
    """The compiled policy of every project (an unknown project is open). `default_id` is the project of
    credentials that name none (the engine's shared-secret tokens); `workspace` knows each project's
    workspace, so their tunnels carry it too (a workspace-targeted grant reads it)."""

    def __init__(self, policies: Mapping[str, PolicyDocument] | None = None) -> None:
        self._compiled = {project: CompiledPolicy.of(p) for project, p in (policies or {}).items()}
        self._workspaces: Mapping[str, str] = {}
        self.default_id = DEFAULT_PROJECT

    def project(self, project_id: str | None) -> str:
        """`project_id`, or the default project's id for credentials without one."""
        return project_id or self.default_id

    def workspace(self, project_id: str) -> str | None:
        """The workspace of a known project, or None."""
        return self._workspaces.get(project_id)

    def get(self, project_id: str | None) -> CompiledPolicy:
        return self._compiled.get(project_id or self.default_id, OPEN)

    def set(self, project_id: str, policy: PolicyDocument) -> None:
        self._compiled[project_id] = CompiledPolicy.of(policy)

    def replace(self, policies: Mapping[str, PolicyDocument], *, default_id: str | None = None,
                workspaces: Mapping[str, str] | None = None) -> None:
        """Every project's policy (and workspace: project id → workspace id) at once (a reload from the store)."""
        self._compiled = {project: CompiledPolicy.of(p) for project, p in policies.items()}
        if workspaces is not None:
            self._workspaces = dict(workspaces)
        if default_id is not None:
            self.default_id = default_id
