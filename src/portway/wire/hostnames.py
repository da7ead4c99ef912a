"""Published hostnames owned by an engine (protocol facts §2.5, "stable domains").

Two shapes are accepted for an engine whose host is H:
- `<label>.t.H`, the engine's own shape (CE: DNS `*.t.H`);
- `r<8 hex>-<first label of H>.t.<rest of H>`, what rstream clients generate for multi-label hosts.
"""

from __future__ import annotations

import ipaddress
import re
import secrets

from portway.wire.messages import TunnelProperties

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_STABLE_SLUG = re.compile(r"^r[0-9a-f]{8}-")
_SLUG_LEN = len("r12345678-")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def tunnel_suffix(engine_host: str) -> str:
    """The zone published hostnames live in: `t.<engine host>`."""
    return f"t.{engine_host.lower().rstrip('.')}"


def is_engine_hostname(hostname: str, engine_host: str) -> bool:
    """True when `hostname` is one of the two shapes this engine owns."""
    name = hostname.lower().rstrip(".")
    host = engine_host.lower().rstrip(".")
    label, dot, rest = name.partition(".")
    if not dot or not _LABEL.match(label):
        return False
    if rest == tunnel_suffix(host):
        return True
    if _is_ip(host) or "." not in host:
        return False
    first, _, remainder = host.partition(".")
    # Exactly r<8 hex>-<first>: a looser suffix test would also claim r…-x-<first>, the names of host x-<first>.
    return rest == f"t.{remainder}" and bool(_STABLE_SLUG.match(label)) and label[_SLUG_LEN:] == first


def allocate(engine_host: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A fresh random hostname `<10 hex>.t.<engine host>` not in `taken`."""
    while True:
        candidate = f"{secrets.token_hex(5)}.{tunnel_suffix(engine_host)}"
        if candidate not in taken:
            return candidate


def forwarding_address(p: TunnelProperties) -> str:
    """How visitors reach a tunnel, in the shape the rstream clients print (§2.5)."""
    if not p.publish:
        return f"rstrm://{p.name or p.id} (unpublished)"
    if p.protocol == "http" and p.hostname:
        return f"https://{p.hostname}" + (f":{p.port}" if p.port and p.port != 443 else "")
    if p.protocol == "tcp" and p.host:
        return f"tcp://{p.host}"
    if p.protocol == "tls" and p.hostname:
        return f"tls://{p.hostname}:{p.port or 443}"
    return p.host or p.hostname or str(p.id)
