"""Who the admin API admits (`is_operator`): the stored role of the user behind a PAT decides for the PAT and
its derived tokens; claims decide only where no user stands behind a token."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from portway.engine.access.grant import Grant
from portway.engine.access.tokens import AccessPrincipal, TokenKind
from portway.engine.api.admin_routes import is_operator
from portway.engine.auth import Principal

ADMIN = {"permissions": ["admin"]}


def principal(kind: TokenKind, role: str | None, claims: dict[str, object],
              stored: list[str] | None = None) -> AccessPrincipal:
    grant = Grant.of(stored, None).intersect(Grant.from_claims(claims))
    return AccessPrincipal(subject="s", token_id="t", claims=MappingProxyType(claims), kind=kind, grant=grant,
                           role=role)


@pytest.mark.parametrize(("who", "admitted"), [
    (principal("pat", "operator", {}), True),                                      # an operator's PAT
    (principal("pat", "operator", {}, stored=["tunnels.resources.read-only"]), False),  # narrowed without admin
    (principal("pat", "operator", ADMIN, stored=["admin"]), True),
    (principal("pat", "member", ADMIN, stored=["admin"]), False),                   # a member's, whatever it claims
    (principal("pat", "member", {"role": "operator"}), False),
    (principal("auth", "operator", {}), False),                                    # derived: asks for admin itself
    (principal("auth", "operator", ADMIN), True),
    (principal("auth", "member", ADMIN), False),                                   # derived from a member's PAT
    (principal("auth", None, ADMIN), True),                                        # engine-secret tokens: claims
    (principal("ce", None, {"role": "operator"}), True),
    (principal("ce", None, {}), False),
    (principal("app", None, ADMIN, stored=["admin"]), True),
    (principal("pat", None, ADMIN, stored=["admin"]), True),                       # a PAT without a user on record
    (Principal(subject="s", token_id="t", claims=MappingProxyType({"role": "operator"})), True),
    (Principal(subject="s", token_id="t"), False),
])
def test_is_operator(who: Principal, admitted: bool) -> None:
    assert is_operator(who) is admitted
