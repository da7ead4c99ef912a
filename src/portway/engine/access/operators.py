"""Who may use the admin API (`is_operator`). Pure.

A claim is only believed where the engine signed it: an app-credential holder signs its own tokens, so
its `role` and `permissions` claims say nothing about operator rights by themselves. Where a stored
credential stands behind a token (a PAT, an app credential, or a token derived from either), the store
decides (`AccessPrincipal.role`, read at every verification, so a change applies at the next request):

| token | operator token when |
|---|---|
| a user's PAT | the user is an operator, unless the PAT was narrowed to permissions without `admin` |
| an app token | its credential's stored permissions list `admin` and the token does not narrow it away |
| derived from one of these | the same role, and the derived token holds `admin` itself |
| engine-secret tokens (`portway engine token`) and what derives from them | `"role": "operator"` or `admin` |

`admin` is never implied by "every permission" (a null list) except for an operator's own PAT, and a token
can only derive `admin` from an operator token (api/tokens.py `derive`).
"""

from __future__ import annotations

from portway.engine.access.tokens import AccessPrincipal
from portway.engine.auth import Principal

ADMIN_PERMISSION = "admin"
OPERATOR = "operator"


def is_operator(principal: Principal) -> bool:
    if isinstance(principal, AccessPrincipal):
        held = principal.permissions
        if principal.kind in ("pat", "app") or principal.role is not None:  # the store decides
            if principal.role != OPERATOR:
                return False
            if principal.kind == "pat":
                return held is None or ADMIN_PERMISSION in held
            return held is not None and ADMIN_PERMISSION in held
    else:  # verified by the engine secret alone (no access layer)
        claimed = principal.claims.get("permissions")
        held = frozenset(p for p in claimed if isinstance(p, str)) if isinstance(claimed, list) else None
    # Claims the engine signed, with no stored credential behind them.
    return principal.claims.get("role") == OPERATOR or (held is not None and ADMIN_PERMISSION in held)
