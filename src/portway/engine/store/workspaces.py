"""Workspaces and projects (users live in users.py). Projects are named within their workspace; a reference
is an id or a name (`workspace/project`, or a bare name when only one project carries it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from portway.engine.store.errors import Conflict, Invalid, NotFound
from portway.engine.store.ids import check_name, new_id, now
from portway.engine.store.records import Project, Workspace, utc
from portway.engine.store.schema import AccessPolicyRow, AppCredentialRow, PatRow, ProjectRow, WorkspaceRow

if TYPE_CHECKING:
    from portway.engine.store.store import Store

DEFAULT = "default"


def workspace_record(row: WorkspaceRow) -> Workspace:
    return Workspace(id=row.id, name=row.name, created_at=utc(row.created_at))


def project_record(row: ProjectRow) -> Project:
    return Project(id=row.id, workspace_id=row.workspace_id, name=row.name, created_at=utc(row.created_at))


async def ensure_defaults(store: Store) -> Project:
    """The `default` workspace and its `default` project, created on first start."""
    async with store.transaction() as session:
        workspace = await session.scalar(select(WorkspaceRow).where(WorkspaceRow.name == DEFAULT))
        if workspace is None:
            workspace = WorkspaceRow(id=new_id("ws"), name=DEFAULT, created_at=now())
            session.add(workspace)
            await session.flush()
        project = await session.scalar(select(ProjectRow).where(ProjectRow.workspace_id == workspace.id,
                                                                ProjectRow.name == DEFAULT))
        if project is None:
            project = ProjectRow(id=new_id("prj"), workspace_id=workspace.id, name=DEFAULT, created_at=now())
            session.add(project)
        return project_record(project)


async def create_workspace(store: Store, name: str) -> Workspace:
    check_name(name, "workspace")
    try:
        async with store.transaction() as session:
            row = WorkspaceRow(id=new_id("ws"), name=name, created_at=now())
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a workspace named {name!r} exists") from None
    return workspace_record(row)


async def list_workspaces(store: Store) -> list[Workspace]:
    async with store.transaction() as session:
        rows = await session.scalars(select(WorkspaceRow).order_by(WorkspaceRow.created_at, WorkspaceRow.name))
        return [workspace_record(row) for row in rows]


async def _workspace_row(session: AsyncSession, ref: str) -> WorkspaceRow:
    row = await session.get(WorkspaceRow, ref) or await session.scalar(
        select(WorkspaceRow).where(WorkspaceRow.name == ref))
    if row is None:
        raise NotFound(f"no workspace {ref!r}")
    return row


async def get_workspace(store: Store, ref: str) -> Workspace:
    """By id or name."""
    async with store.transaction() as session:
        return workspace_record(await _workspace_row(session, ref))


async def delete_workspace(store: Store, ref: str) -> None:
    """Only an empty workspace, and never `default` (the engine's fallback home)."""
    async with store.transaction() as session:
        row = await _workspace_row(session, ref)
        if row.name == DEFAULT:
            raise Conflict("the default workspace cannot be deleted")
        count = await session.scalar(select(func.count()).select_from(ProjectRow)
                                     .where(ProjectRow.workspace_id == row.id))
        if count:
            raise Conflict(f"workspace {row.name!r} still has {count} project(s): delete them first")
        await session.delete(row)


async def create_project(store: Store, name: str, workspace: str = DEFAULT) -> Project:
    check_name(name, "project")
    try:
        async with store.transaction() as session:
            parent = await _workspace_row(session, workspace)
            row = ProjectRow(id=new_id("prj"), workspace_id=parent.id, name=name, created_at=now())
            session.add(row)
    except IntegrityError:
        raise Conflict(f"workspace {workspace!r} already has a project named {name!r}") from None
    return project_record(row)


async def list_projects(store: Store, workspace: str | None = None) -> list[Project]:
    async with store.transaction() as session:
        query = select(ProjectRow).order_by(ProjectRow.created_at, ProjectRow.name)
        if workspace is not None:
            query = query.where(ProjectRow.workspace_id == (await _workspace_row(session, workspace)).id)
        return [project_record(row) for row in await session.scalars(query)]


async def project_row(session: AsyncSession, ref: str) -> ProjectRow:
    """A project by id, `workspace/name`, or a name that only one project carries."""
    row = await session.get(ProjectRow, ref)
    if row is not None:
        return row
    query = select(ProjectRow)
    if "/" in ref:
        workspace, _, ref = ref.partition("/")
        query = query.where(ProjectRow.workspace_id == (await _workspace_row(session, workspace)).id)
    rows = list(await session.scalars(query.where(ProjectRow.name == ref).limit(2)))
    if not rows:
        raise NotFound(f"no project {ref!r}")
    if len(rows) > 1:
        raise Invalid(f"several workspaces have a project named {ref!r}: use WORKSPACE/{ref} or its id")
    return rows[0]


async def get_project(store: Store, ref: str) -> Project:
    async with store.transaction() as session:
        return project_record(await project_row(session, ref))


async def delete_project(store: Store, ref: str) -> None:
    """Only a project without live credentials (revoke them first: deleting must not be a silent revocation),
    and never the default workspace's `default`. Its revoked credentials and policy history go with it, and its
    webhook endpoints with their deliveries (foreign keys ON DELETE CASCADE)."""
    async with store.transaction() as session:
        row = await project_row(session, ref)
        workspace = await session.get(WorkspaceRow, row.workspace_id)
        if row.name == DEFAULT and workspace is not None and workspace.name == DEFAULT:
            raise Conflict("the default project cannot be deleted")
        live = 0
        for table in (PatRow, AppCredentialRow):
            live += await session.scalar(select(func.count()).select_from(table).where(
                table.project_id == row.id, table.revoked_at.is_(None))) or 0
        if live:
            raise Conflict(f"project {row.name!r} still has {live} live credential(s): revoke them first")
        for owned in (PatRow, AppCredentialRow, AccessPolicyRow):
            for child in await session.scalars(select(owned).where(owned.project_id == row.id)):
                await session.delete(child)
        await session.flush()
        await session.delete(row)
