"""engine/webhooks/store.py on a real SQLite file: leases are exclusive until they expire, a stale holder
cannot record, rotation keeps the old secret for its grace period, and everything survives a reopen."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.engine.webhooks.records import Attempt
from portway.engine.webhooks.secret import new_secret
from portway.engine.webhooks.store import StoreError, WebhookStore

KINDS = ("tunnel.created", "tunnel.deleted")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WebhookStore]:
    opened = WebhookStore.open(tmp_path / "hooks.db")
    try:
        yield opened
    finally:
        opened.close()


def test_a_lease_is_exclusive_until_it_expires(store: WebhookStore) -> None:
    hook = store.create_endpoint(project_id="default", url="http://x/", event_types=KINDS, enabled=True,
                                 secret=new_secret(), now=0)
    (delivery_id,) = store.record(event_id="evt_1", event_type="tunnel.created", body=b"{}",
                                  endpoint_ids=[hook.id], now=10, deadline=100)
    assert store.lease(now=9, limit=5, lease_s=30, owner="a") == []  # not due yet
    (held,) = store.lease(now=10, limit=5, lease_s=30, owner="a")
    assert held.delivery_id == delivery_id and held.body == b"{}" and held.failures == 0
    assert store.lease(now=39, limit=5, lease_s=30, owner="b") == []
    (taken,) = store.lease(now=40, limit=5, lease_s=30, owner="b")  # a's lease expired: a crash, say
    failed = Attempt(number=1, started_at=10, latency_ms=1.0, error="late")
    assert not store.finish(held, "a", failed, status="pending", next_attempt_at=50)
    ok = Attempt(number=1, started_at=40, latency_ms=2.0, status_code=200, response_excerpt="ok")
    assert store.finish(taken, "b", ok, status="delivered", next_attempt_at=None)
    (delivery,) = store.deliveries(hook.id, limit=10)
    assert delivery.status == "delivered" and delivery.attempts == 1
    assert store.attempts(delivery_id) == [ok]
    assert store.next_wakeup() is None


def test_release_makes_deliveries_due_again(store: WebhookStore) -> None:
    hook = store.create_endpoint(project_id="default", url="http://x/", event_types=KINDS, enabled=True,
                                 secret=new_secret(), now=0)
    store.record(event_id="evt_1", event_type="tunnel.created", body=b"{}", endpoint_ids=[hook.id], now=0,
                 deadline=100)
    assert len(store.lease(now=1, limit=5, lease_s=30, owner="a")) == 1
    assert store.next_wakeup() == 31
    store.release("a")
    assert len(store.lease(now=1, limit=5, lease_s=30, owner="b")) == 1


def test_rotation_keeps_the_old_secret_for_the_grace_period(store: WebhookStore) -> None:
    old, new = new_secret(), new_secret()
    hook = store.create_endpoint(project_id="default", url="http://x/", event_types=KINDS, enabled=True,
                                 secret=old, now=0)
    assert store.rotate(hook.id, secret=new, now=10, grace_s=100)
    assert store.secrets(hook.id, now=50) == [new, old]
    assert store.secrets(hook.id, now=110) == [new]
    assert not store.rotate("wh_nope", secret=new, now=10, grace_s=0)


def test_subscribers_and_deletion(store: WebhookStore) -> None:
    wanted = store.create_endpoint(project_id="default", url="http://x/", event_types=KINDS, enabled=True,
                                   secret=new_secret(), now=0)
    store.create_endpoint(project_id="default", url="http://y/", event_types=KINDS, enabled=False,
                          secret=new_secret(), now=0)
    store.create_endpoint(project_id="default", url="http://z/", event_types=("client.created",), enabled=True,
                          secret=new_secret(), now=0)
    assert store.subscribers("default", "tunnel.created") == [wanted.id]
    assert store.subscribers("other", "tunnel.created") == []
    store.record(event_id="evt_1", event_type="tunnel.created", body=b"{}", endpoint_ids=[wanted.id], now=0,
                 deadline=100)
    assert store.delete_endpoint(wanted.id) and not store.delete_endpoint(wanted.id)
    assert store.lease(now=1, limit=5, lease_s=30, owner="a") == []
    assert store.prune(before=1) == 0  # nothing finished; the orphan event is gone all the same


def test_state_survives_a_reopen_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "hooks.db"
    first = WebhookStore.open(path)
    hook = first.create_endpoint(project_id="default", url="http://x/", event_types=KINDS, enabled=True,
                                 secret=new_secret(), now=0)
    first.record(event_id="evt_1", event_type="tunnel.created", body=b"{}", endpoint_ids=[hook.id], now=0,
                 deadline=100)
    first.lease(now=1, limit=5, lease_s=30, owner="dead")
    first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = WebhookStore.open(path)
    try:
        assert [e.id for e in second.endpoints("default", now=1)] == [hook.id]
        assert second.lease(now=2, limit=5, lease_s=30, owner="new") == []
        assert len(second.lease(now=31, limit=5, lease_s=30, owner="new")) == 1
    finally:
        second.close()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "hooks.db"
    path.write_bytes(b"not a database, not at all" * 100)
    with pytest.raises(StoreError, match="webhook database"):
        WebhookStore.open(path)
