"""The control-plane store as the token verifier and the policy book see it: an in-memory copy of the
credentials (PATs by hash with their user's role and disabled state, application credentials by client id,
revocations, the PATs of disabled users) and of each project's
access policy. Verification runs on every agent connection and token-auth request and must not wait on
a database, so it reads this copy; `reload()` refreshes it after every admin change and periodically
(`store.refresh_seconds`), which also picks up changes made by another engine on a shared PostgreSQL.

A policy with a country allow-list that this engine cannot enforce (no GeoIP database: it refuses every
visitor of the project's tunnels) is warned about once per project, when it is first loaded, since engines
sharing a database may differ in that and the admin API of this one refuses such a policy itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from portway.engine.access.operators import ADMIN_PERMISSION, OPERATOR
from portway.engine.access.tokens import AppRecord, PatRecord
from portway.engine.accesspolicy import PolicyBook, PolicyDocument

if TYPE_CHECKING:
    from portway.engine.store import Store

log = logging.getLogger("portway.engine.credentials")


class CredentialCache:
    """`CredentialStore` (access/tokens.py) over a snapshot of the store."""

    def __init__(self, policies: PolicyBook, *, geoip_available: bool = True) -> None:
        self._pats: dict[str, PatRecord] = {}
        self._apps: dict[str, AppRecord] = {}
        self._revoked: frozenset[str] = frozenset()
        self._disabled: frozenset[str] = frozenset()
        self._roles: dict[str, str] = {}  # PAT id -> its user's role; app client id -> operator/member
        self._policies = policies
        self._geoip_available = geoip_available
        self._warned_countries: set[str] = set()  # projects whose country allow-list was warned about
        self._task: asyncio.Task[None] | None = None
        self._reloaded: list[Callable[[], object]] = []
        # One reload at a time: a slow periodic reload that began before an admin change must not finish after
        # the reload that change triggered and swap the older copy back in (seen: a new PAT "unknown" for 10 s).
        self._reloading = asyncio.Lock()

    def pat(self, sha256_hex: str) -> PatRecord | None:
        return self._pats.get(sha256_hex)

    def app_credential(self, client_id: str) -> AppRecord | None:
        return self._apps.get(client_id)

    def revoked(self, credential_id: str) -> bool:
        return credential_id in self._revoked

    def disabled(self, credential_id: str) -> bool:
        return credential_id in self._disabled

    def role(self, credential_id: str) -> str | None:
        return self._roles.get(credential_id)

    def on_reload(self, callback: Callable[[], object]) -> None:
        """Call `callback` after every reload (the engine closes what a revocation withdrew)."""
        self._reloaded.append(callback)

    async def reload(self, store: Store) -> None:
        """Read everything again and swap it in at once (readers never see half of a reload); reloads run one
        after another, so the copy swapped in last is the newest."""
        async with self._reloading:
            await self._reload(store)

    async def _reload(self, store: Store) -> None:
        from portway.engine.store import (  # noqa: PLC0415 - SQLAlchemy only loads in a starting engine
            get_access_policy,
            list_app_credentials,
            list_pats,
            list_projects,
            list_revocations,
            list_users,
        )

        projects = {p.id: p for p in await list_projects(store)}
        users = {u.id: u for u in await list_users(store)}
        pats: dict[str, PatRecord] = {}
        disabled: set[str] = set()
        for pat in await list_pats(store):
            project = projects.get(pat.project_id)
            owner = users.get(pat.user_id or "")
            if owner is not None and owner.disabled_at is not None:
                disabled.add(pat.id)  # refuses the PAT and, by `sourceCredentialId`, what derives from it
            pats[pat.token_sha256] = PatRecord(
                id=pat.id, subject=owner.subject if owner else pat.name, project_id=pat.project_id,
                workspace_id=project.workspace_id if project else None, revoked=pat.revoked_at is not None,
                permissions=pat.permissions, resources=pat.resources, expires_at=pat.expires_at.timestamp(),
                role=owner.role if owner else None, disabled=pat.id in disabled)
        apps: dict[str, AppRecord] = {}
        for app in await list_app_credentials(store):
            project = projects.get(app.project_id)
            apps[app.client_id] = AppRecord(
                client_id=app.client_id, public_key_pem=app.public_key_pem, subject=app.name,
                project_id=app.project_id, workspace_id=project.workspace_id if project else None,
                revoked=app.revoked_at is not None, permissions=app.permissions, resources=app.resources)
        revoked = frozenset(r.ref for r in await list_revocations(store))
        default = next((p.id for p in projects.values() if p.name == "default"), None)
        policies = {project_id: (await get_access_policy(store, project_id)).policy for project_id in projects}
        roles = {record.id: record.role for record in pats.values() if record.role is not None}
        roles.update({client_id: OPERATOR if ADMIN_PERMISSION in (record.permissions or ()) else "member"
                      for client_id, record in apps.items()})
        self._pats, self._apps, self._revoked, self._disabled = pats, apps, revoked, frozenset(disabled)
        self._roles = roles
        self._policies.replace(policies, default_id=default,
                               workspaces={p.id: p.workspace_id for p in projects.values()})
        if not self._geoip_available:
            self._warn_countries({p.id: p.name for p in projects.values()}, policies)
        for callback in self._reloaded:
            try:
                callback()
            except Exception:
                log.exception("a credential reload listener failed")

    def _warn_countries(self, names: dict[str, str], policies: dict[str, PolicyDocument]) -> None:
        """One warning per project whose policy has a country allow-list this engine cannot check; again only
        if the list goes away and comes back (reloads run every `store.refresh_seconds`)."""
        listing = {project: policy.allowed_countries for project, policy in policies.items()
                   if policy.allowed_countries}
        for project in sorted(listing.keys() - self._warned_countries):
            log.warning("project %s (%s): its access policy admits visitors from %s only, but this engine has no "
                        "GeoIP database (geoip.database_file), so it refuses every visitor of the project's tunnels",
                        names.get(project, project), project, ", ".join(listing[project] or ()))
        self._warned_countries = set(listing)

    def start(self, store: Store, every_s: float) -> None:
        """Reload every `every_s` seconds until `stop()` (changes made by other engines)."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await self.reload(store)
                except Exception:
                    log.exception("cannot refresh credentials from the store; keeping the last copy")
        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
