"""Who the admin API admits (`is_operator`): where a stored credential stands behind a token, the store decides
(a PAT's user role; an app credential's stored `admin`); the claims are believed only where the engine signed
them without a stored credential behind (engine-secret tokens and what derives from them)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from portway.engine.access.grant import Grant
from portway.engine.access.operators import is_operator
from portway.engine.access.tokens import AccessPrincipal, TokenKind
from portway.engine.auth import Principal

ADMIN = {"permissions": ["admin"]}
OPERATOR_CLAIM = {"role": "operator"}


def principal(kind: TokenKind, role: str | None, claims: dict[str, object],
              stored: list[str] | None = None) -> AccessPrincipal:
    grant = Grant.of(stored, None).intersect(Grant.from_claims(claims))
    return AccessPrincipal(subject="s", token_id="t", claims=MappingProxyType(claims), kind=kind, grant=grant,
                           role=role)


@pytest.mark.parametrize(("who", "admitted"), [
    # a user's PAT: the user's role decides
    (principal("pat", "operator", {}), True),
    (principal("pat", "operator", {}, stored=["tunnels.resources.read-only"]), False),  # narrowed without admin
    (principal("pat", "operator", ADMIN, stored=["admin"]), True),
    (principal("pat", "member", ADMIN, stored=["admin"]), False),                   # a member's, whatever it claims
    (principal("pat", "member", OPERATOR_CLAIM), False),
    (principal("pat", None, ADMIN, stored=["admin"]), False),                       # no user on record
    # app tokens: the holder signs its own claims; only the credential's stored `admin` counts
    (principal("app", "member", OPERATOR_CLAIM), False),
    (principal("app", "member", ADMIN), False),                                     # stored: every permission
    (principal("app", "member", ADMIN, stored=["tunnels.resources.read-only"]), False),
    (principal("app", "operator", {}, stored=["admin"]), True),
    (principal("app", "operator", {"permissions": ["tunnels.resources.read-only"]},
               stored=["admin", "tunnels.resources.read-only"]), False),            # narrowed away by the token
    (principal("app", None, ADMIN), False),                                         # unknown credential
    # derived tokens: the stored role behind their source, and `admin` held themselves
    (principal("auth", "operator", {}), False),
    (principal("auth", "operator", ADMIN), True),
    (principal("auth", "member", ADMIN), False),
    (principal("auth", "member", OPERATOR_CLAIM), False),
    # engine-secret tokens and what derives from them: the engine signed the claims
    (principal("auth", None, ADMIN), True),
    (principal("ce", None, OPERATOR_CLAIM), True),
    (principal("ce", None, {}), False),
    (Principal(subject="s", token_id="t", claims=MappingProxyType(OPERATOR_CLAIM)), True),
    (Principal(subject="s", token_id="t", claims=MappingProxyType(ADMIN)), True),
    (Principal(subject="s", token_id="t"), False),
])
def test_is_operator(who: Principal, admitted: bool) -> None:
    assert is_operator(who) is admitted
