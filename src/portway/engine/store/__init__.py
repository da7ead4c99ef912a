"""The control-plane store: workspaces, projects, users (role, disabled), personal access tokens, application
credentials, revocations and access policies, in SQLite (default, in the state directory) or PostgreSQL.

Open with `await Store.open(store_url(config.store.url, state_dir))`; every repository function is async,
takes the store first and returns frozen records (records.py). Refusals are `StoreError`s (errors.py).
"""

from portway.engine.accesspolicy import PolicyDocument
from portway.engine.store.apps import (
    create_app_credential,
    list_app_credentials,
    lookup_app_credential,
    revoke_app_credential,
)
from portway.engine.store.errors import Conflict, Invalid, NotFound, StoreError
from portway.engine.store.pats import (
    create_pat,
    get_pat,
    list_pats,
    lookup_pat_by_hash,
    revoke_pat,
    token_sha256,
    touch_pat,
)
from portway.engine.store.policies import get_access_policy, policy_history, set_access_policy
from portway.engine.store.records import (
    AccessPolicy,
    AppCredential,
    CreatedAppCredential,
    CreatedPat,
    Pat,
    Project,
    Revocation,
    User,
    Workspace,
)
from portway.engine.store.revocations import is_revoked, list_revocations, record_revocation
from portway.engine.store.store import Store, store_url
from portway.engine.store.users import (
    create_user,
    delete_user,
    disable_user,
    enable_user,
    get_user,
    list_users,
    set_role,
    update_user,
)
from portway.engine.store.workspaces import (
    DEFAULT,
    create_project,
    create_workspace,
    delete_project,
    delete_workspace,
    get_project,
    get_workspace,
    list_projects,
    list_workspaces,
)

__all__ = [
    "DEFAULT",
    "AccessPolicy",
    "AppCredential",
    "Conflict",
    "CreatedAppCredential",
    "CreatedPat",
    "Invalid",
    "NotFound",
    "Pat",
    "PolicyDocument",
    "Project",
    "Revocation",
    "Store",
    "StoreError",
    "User",
    "Workspace",
    "create_app_credential",
    "create_pat",
    "create_project",
    "create_user",
    "create_workspace",
    "delete_project",
    "delete_user",
    "delete_workspace",
    "disable_user",
    "enable_user",
    "get_access_policy",
    "get_pat",
    "get_project",
    "get_user",
    "get_workspace",
    "is_revoked",
    "list_app_credentials",
    "list_pats",
    "list_projects",
    "list_revocations",
    "list_users",
    "list_workspaces",
    "lookup_app_credential",
    "lookup_pat_by_hash",
    "policy_history",
    "record_revocation",
    "revoke_app_credential",
    "revoke_pat",
    "set_access_policy",
    "set_role",
    "store_url",
    "token_sha256",
    "touch_pat",
    "update_user",
]
