"""engine/webhooks/store.py on real SQLite and PostgreSQL databases: leases are exclusive until they expire
(also when two dispatchers race for them), a stale holder cannot record, rotation keeps the old secret for
its grace period, endpoints belong to one project, and everything survives a reopen."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from portway.engine.store import Store, create_project, delete_project, list_projects, store_url
from portway.engine.webhooks.records import Attempt, PendingEvent, Subscription
from portway.engine.webhooks.secret import new_secret
from portway.engine.webhooks.store import WebhookStore

pytestmark = pytest.mark.store

KINDS = ("tunnel.created", "tunnel.deleted")


async def _default(store: Store) -> str:
    (project,) = await list_projects(store)
    return project.id


def _event(event_id: str, *endpoints: str) -> PendingEvent:
    return PendingEvent(event_id, "tunnel.created", b"{}", endpoints)


async def test_a_lease_is_exclusive_until_it_expires(store: Store) -> None:
    hooks = WebhookStore(store)
    hook = await hooks.create_endpoint(project_id=await _default(store), url="http://x/", event_types=KINDS,
                                       enabled=True, secret=new_secret(), now=0)
    assert await hooks.record([_event("evt_1", hook.id)], now=10, deadline=100) == 1
    assert await hooks.lease(now=9, limit=5, lease_s=30, owner="a") == ([], 10)  # not due yet
    (held,), wakeup = await hooks.lease(now=10, limit=5, lease_s=30, owner="a")
    assert held.body == b"{}" and held.failures == 0 and held.url == "http://x/" and wakeup == 40
    assert await hooks.lease(now=39, limit=5, lease_s=30, owner="b") == ([], 40)
    (taken,), _ = await hooks.lease(now=40, limit=5, lease_s=30, owner="b")  # a's lease expired: a crash, say
    failed = Attempt(number=1, started_at=10, latency_ms=1.0, error="late")
    assert not await hooks.finish(held, "a", failed, status="pending", next_attempt_at=50)
    ok = Attempt(number=1, started_at=40, latency_ms=2.0, status_code=200, response_excerpt="ok")
    assert await hooks.finish(taken, "b", ok, status="delivered", next_attempt_at=None)
    ((delivery, attempts),) = await hooks.deliveries(hook.id, limit=10)
    assert delivery.status == "delivered" and delivery.attempts == 1 and attempts == [ok]
    assert await hooks.attempts(delivery.id) == [ok]
    assert await hooks.lease(now=41, limit=5, lease_s=30, owner="b") == ([], None)


async def test_racing_dispatchers_never_share_a_delivery(store: Store) -> None:
    hooks = WebhookStore(store)
    hook = await hooks.create_endpoint(project_id=await _default(store), url="http://x/", event_types=KINDS,
                                       enabled=True, secret=new_secret(), now=0)
    await hooks.record([_event(f"evt_{i}", hook.id) for i in range(40)], now=0, deadline=100)
    results = await asyncio.gather(*(hooks.lease(now=1, limit=40, lease_s=30, owner=f"d{n}") for n in range(4)))
    taken = [lease.delivery_id for leases, _ in results for lease in leases]
    assert len(taken) == 40 and len(set(taken)) == 40


async def test_release_makes_deliveries_due_again(store: Store) -> None:
    hooks = WebhookStore(store)
    hook = await hooks.create_endpoint(project_id=await _default(store), url="http://x/", event_types=KINDS,
                                       enabled=True, secret=new_secret(), now=0)
    await hooks.record([_event("evt_1", hook.id)], now=0, deadline=100)
    leases, wakeup = await hooks.lease(now=1, limit=5, lease_s=30, owner="a")
    assert len(leases) == 1 and wakeup == 31
    await hooks.release("a")
    assert len((await hooks.lease(now=1, limit=5, lease_s=30, owner="b"))[0]) == 1


async def test_rotation_keeps_the_old_secret_for_the_grace_period(store: Store) -> None:
    hooks = WebhookStore(store)
    project = await _default(store)
    old, new = new_secret(), new_secret()
    hook = await hooks.create_endpoint(project_id=project, url="http://x/", event_types=KINDS, enabled=True,
                                       secret=old, now=0)
    assert await hooks.rotate(hook.id, project_id=project, secret=new, now=10, grace_s=100)
    assert await hooks.secrets(hook.id, now=50) == [new, old]
    assert await hooks.secrets(hook.id, now=110) == [new]
    assert not await hooks.rotate("wh_nope", project_id=project, secret=new, now=10, grace_s=0)
    found = await hooks.endpoint(hook.id, project_id=project, now=50)
    assert found is not None and found.secrets_active == 2 and new not in found.secret_hint


async def test_endpoints_belong_to_one_project(store: Store) -> None:
    hooks = WebhookStore(store)
    mine, theirs = await _default(store), (await create_project(store, "other")).id
    wanted = await hooks.create_endpoint(project_id=mine, url="http://x/", event_types=KINDS, enabled=True,
                                         secret=new_secret(), now=0)
    await hooks.create_endpoint(project_id=mine, url="http://y/", event_types=KINDS, enabled=False,
                                secret=new_secret(), now=0)
    other = await hooks.create_endpoint(project_id=theirs, url="http://z/", event_types=("client.created",),
                                        enabled=True, secret=new_secret(), now=0)
    assert sorted(await hooks.subscriptions(), key=lambda s: s.project_id == theirs) == [
        Subscription(wanted.id, mine, frozenset(KINDS)), Subscription(other.id, theirs, frozenset({"client.created"}))]
    assert [e.url for e in await hooks.endpoints(mine, now=0)] == ["http://x/", "http://y/"]
    assert await hooks.endpoint(other.id, project_id=mine, now=0) is None
    assert not await hooks.delete_endpoint(other.id, project_id=mine)
    assert not await hooks.rotate(other.id, project_id=mine, secret=new_secret(), now=1, grace_s=0)


async def test_deleting_an_endpoint_takes_its_deliveries_and_skips_it_in_later_records(store: Store) -> None:
    hooks = WebhookStore(store)
    project = await _default(store)
    gone = await hooks.create_endpoint(project_id=project, url="http://x/", event_types=KINDS, enabled=True,
                                       secret=new_secret(), now=0)
    kept = await hooks.create_endpoint(project_id=project, url="http://y/", event_types=KINDS, enabled=True,
                                       secret=new_secret(), now=0)
    await hooks.record([_event("evt_1", gone.id)], now=0, deadline=100)
    assert await hooks.delete_endpoint(gone.id, project_id=project)
    assert not await hooks.delete_endpoint(gone.id, project_id=project)
    # The recorder looked the endpoints up before the deletion: that delivery is skipped, the other stored.
    assert await hooks.record([_event("evt_2", gone.id, kept.id)], now=0, deadline=100) == 1
    assert await hooks.record([_event("evt_2", kept.id)], now=0, deadline=100) == 0  # an event is stored once
    leases, _ = await hooks.lease(now=1, limit=5, lease_s=30, owner="a")
    assert [lease.url for lease in leases] == ["http://y/"]
    assert await hooks.prune(before=1) == 0  # nothing finished; the orphaned evt_1 is gone all the same


async def test_deleting_a_project_deletes_its_endpoints_and_deliveries(store: Store) -> None:
    hooks = WebhookStore(store)
    project = (await create_project(store, "gone")).id
    hook = await hooks.create_endpoint(project_id=project, url="http://x/", event_types=KINDS, enabled=True,
                                       secret=new_secret(), now=0)
    await hooks.record([_event("evt_1", hook.id)], now=0, deadline=100)
    await delete_project(store, project)
    assert await hooks.endpoint(hook.id, project_id=None, now=0) is None
    assert await hooks.secrets(hook.id, now=0) == []
    assert await hooks.lease(now=1, limit=5, lease_s=30, owner="a") == ([], None)


async def test_redelivery_is_a_new_delivery_of_the_same_event(store: Store) -> None:
    hooks = WebhookStore(store)
    hook = await hooks.create_endpoint(project_id=await _default(store), url="http://x/", event_types=KINDS,
                                       enabled=True, secret=new_secret(), now=0)
    await hooks.record([_event("evt_1", hook.id)], now=0, deadline=100)
    ((first, _),) = await hooks.deliveries(hook.id, limit=5)
    again = await hooks.redeliver(hook.id, first.id, now=5, deadline=200)
    assert again is not None and again.event_id == "evt_1" and again.redelivery_of == first.id
    assert again.status == "pending" and again.deadline_at == 200
    assert await hooks.redeliver("wh_other", first.id, now=5, deadline=200) is None


async def test_state_survives_a_reopen_and_the_sqlite_file_is_private(tmp_path: Path) -> None:
    url: URL = store_url(None, tmp_path)
    first = await Store.open(url)
    try:
        hooks = WebhookStore(first)
        hook = await hooks.create_endpoint(project_id=await _default(first), url="http://x/", event_types=KINDS,
                                           enabled=True, secret=new_secret(), now=0)
        await hooks.record([_event("evt_1", hook.id)], now=0, deadline=100)
        await hooks.lease(now=1, limit=5, lease_s=30, owner="dead")
    finally:
        await first.close()
    assert stat.S_IMODE((tmp_path / "control.sqlite3").stat().st_mode) == 0o600
    second = await Store.open(url)
    try:
        hooks = WebhookStore(second)
        assert [e.id for e in await hooks.endpoints(hook.project_id, now=1)] == [hook.id]
        assert (await hooks.lease(now=2, limit=5, lease_s=30, owner="new"))[0] == []
        assert len((await hooks.lease(now=31, limit=5, lease_s=30, owner="new"))[0]) == 1
    finally:
        await second.close()
