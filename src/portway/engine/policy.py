"""Per-tunnel edge policy: who may reach a published tunnel, decided before anything reaches the agent.

Three controls, from the tunnel's properties (§2.5, §6.4):
- `trusted_ips`: the visitor's address must fall in one of the CIDRs;
- `geoip`: the visitor's country (from the engine's MaxMind database) must be in the list; an address
  the database cannot place is refused, since an allow-list cannot vouch for it;
- `token_auth` (HTTP only): every request carries a valid token, as `Authorization: Bearer` or the
  `rstream.token` query parameter; both are removed before the request goes upstream, because the
  token is a credential for the edge, not for the service behind it.

Building a policy is where a tunnel asking for something this engine cannot enforce is refused
(FEATURE_NOT_AVAILABLE), so a tunnel never comes up with a control silently missing.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from portway.engine.auth import Principal
from portway.errors import AuthError
from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A country lookup: ISO 3166-1 alpha-2 code of an address, or None when unknown.
CountryOf = Callable[[IPAddress], str | None]

TOKEN_PARAM = b"rstream.token"
MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True, slots=True)
class EdgePolicy:
    """The compiled controls of one tunnel. Empty tuples mean "anyone"."""

    networks: tuple[IPNetwork, ...] = ()
    countries: frozenset[str] = frozenset()
    token_auth: bool = False

    def refuses(self, source_ip: str | None, country_of: CountryOf | None) -> str | None:
        """The control that refuses `source_ip` ("trusted_ips" or "geoip"), or None when admitted."""
        if not self.networks and not self.countries:
            return None
        address = parse_address(source_ip)
        if address is None:
            return "trusted_ips" if self.networks else "geoip"
        if self.networks and not any(address in network for network in self.networks):
            return "trusted_ips"
        if self.countries:
            country = country_of(address) if country_of is not None else None
            if country is None or country.upper() not in self.countries:
                return "geoip"
        return None


def build_policy(props: TunnelProperties, *, geoip_available: bool, tokens_enforced: bool) -> EdgePolicy | None:
    """Compile the controls `props` ask for; None when there are none. Raises when one cannot be enforced."""
    if not (props.trusted_ips or props.geoip or props.token_auth):
        return None
    if props.geoip and not geoip_available:
        raise InvalidTunnelProperties("geoip needs a GeoIP database on the engine (geoip.database_file)",
                                      ErrorCode.FEATURE_NOT_AVAILABLE)
    if props.token_auth and not tokens_enforced:
        raise InvalidTunnelProperties("token_auth needs token verification on the engine (auth.jwt.enabled)",
                                      ErrorCode.FEATURE_NOT_AVAILABLE)
    networks = tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in props.trusted_ips)
    return EdgePolicy(networks=networks, countries=frozenset(c.upper() for c in props.geoip),
                      token_auth=bool(props.token_auth))


def parse_address(source_ip: str | None) -> IPAddress | None:
    """The visitor's address, with IPv4-mapped IPv6 (`::ffff:a.b.c.d`, from dual-stack sockets) unwrapped
    so that IPv4 CIDRs and databases match it."""
    if not source_ip:
        return None
    try:
        address = ipaddress.ip_address(source_ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_BYTES:
        return None
    return token.decode("latin-1")


def take_query_token(target: bytes) -> tuple[str | None, bytes]:
    """Remove every `rstream.token` parameter from a request target; return (last token, new target).

    The rest of the target is kept byte for byte (order, encoding), so the upstream sees what the
    visitor sent, minus the credential.
    """
    path, sep, query = target.partition(b"?")
    if not sep or (TOKEN_PARAM not in query and b"%" not in query):
        return None, target  # the common case: no parameter named rstream.token, even percent-encoded
    token: str | None = None
    kept: list[bytes] = []
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")) == TOKEN_PARAM:
            raw = unquote_to_bytes(value.replace(b"+", b" "))
            token = raw.decode("latin-1") if 0 < len(raw) <= MAX_TOKEN_BYTES else None
            continue
        kept.append(pair)
    new_query = b"&".join(kept)
    return token, path + (b"?" + new_query if new_query else b"")


class TokenMemo:
    """token_auth on one visitor connection: a token is verified once, then only its expiry is checked
    for the connection's later requests (a JWT check per request would cost more than relaying it).

    `verify(token, now)` returns the token's principal or raises AuthError; `withdrawn(principal)` says
    why a remembered principal is no longer good (revoked since), checked on every request — set lookups,
    no signature — so a revocation also stops a keep-alive connection at its next request.

    Only a valid token is remembered. A refused one is verified again whenever it is presented, so each
    refused request raises AuthError with its own reason for the edge to log (a remembered token that has
    expired since is verified again too, and says so); what a refusal costs is one verification, as before.
    """

    __slots__ = ("_known", "_verify", "_withdrawn")

    def __init__(self, verify: Callable[[str, float], Principal],
                 withdrawn: Callable[[Principal], str | None] = lambda _: None) -> None:
        self._verify = verify
        self._withdrawn = withdrawn
        self._known: tuple[str, Principal] | None = None

    def principal(self, token: str) -> Principal:
        """Who `token` speaks for; AuthError, whose reason never quotes the token, when it is not valid (now)."""
        now = time.time()
        if self._known is not None:
            known, principal = self._known
            if hmac.compare_digest(known.encode(), token.encode()) and \
                    (principal.expires_at is None or now < principal.expires_at):
                reason = self._withdrawn(principal)
                if reason is None:
                    return principal
                self._known = None
                raise AuthError(reason)
        principal = self._verify(token, now)
        self._known = (token, principal)
        return principal

    def valid(self, token: str) -> bool:
        try:
            self.principal(token)
        except AuthError:
            return False
        return True
