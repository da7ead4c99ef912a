"""Upgrading from the separate webhook outbox (`portway.db`, earlier versions): at start the engine copies its
endpoints, secrets and owed deliveries into the control-plane store, renames the file, and delivers what was
owed — signed with the old secret. A file it cannot read is left in place with one error, and the engine
starts anyway."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from portway.engine.webhooks.secret import new_secret
from tests.conftest import running_engine
from tests.integration.webhook_helpers import Receiver, api, deliveries, until_deliveries

pytestmark = pytest.mark.store

FAST = "webhooks:\n  retry_base_seconds: 0.1\n  retry_cap_seconds: 0.2\n  timeout_seconds: 2\n"
# The schema of the outbox as earlier versions wrote it (schema version 1).
LEGACY_SCHEMA = """
CREATE TABLE endpoints (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, url TEXT NOT NULL, event_types TEXT NOT NULL,
    enabled INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE secrets (endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE, secret TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL);
CREATE TABLE events (id TEXT PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL, recorded_at REAL NOT NULL);
CREATE TABLE deliveries (id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES events(id), status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, next_attempt_at REAL, deadline_at REAL NOT NULL,
    lease_until REAL, lease_owner TEXT, redelivery_of TEXT);
CREATE TABLE attempts (delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE, number INTEGER NOT NULL,
    started_at REAL NOT NULL, latency_ms REAL NOT NULL, status_code INTEGER, response_excerpt TEXT, error TEXT,
    PRIMARY KEY (delivery_id, number));
PRAGMA user_version=1;
"""


def write_legacy(path: Path, url: str, secret: str) -> None:
    now = time.time()
    body = json.dumps({"id": "evt_legacy1", "type": "tunnel.created", "created_at": "2026-11-26T00:00:00Z",
                       "user_id": "old", "workspace_id": None, "project_id": None, "cluster_id": None,
                       "object": {"id": "t1"}}).encode()
    db = sqlite3.connect(path)
    db.executescript(LEGACY_SCHEMA)
    db.execute("INSERT INTO endpoints VALUES ('wh_legacy', 'default', ?, ?, 1, ?)",
               (url, json.dumps(["tunnel.created"]), now - 60))
    db.execute("INSERT INTO secrets VALUES ('wh_legacy', ?, ?, NULL)", (secret, now - 60))
    db.execute("INSERT INTO events VALUES ('evt_legacy1', 'tunnel.created', ?, ?)", (body, now - 30))
    db.execute("INSERT INTO events VALUES ('evt_legacy0', 'tunnel.created', ?, ?)", (body, now - 50))
    # One owed (leased by an engine that died: the lease is dropped), one delivered with its attempt.
    db.execute("INSERT INTO deliveries VALUES ('dlv_owed', 'wh_legacy', 'evt_legacy1', 'pending', 1, ?, ?, ?, ?, "
               "'dead-owner', NULL)", (now - 30, now - 1, now + 3600, now + 3600))
    db.execute("INSERT INTO deliveries VALUES ('dlv_done', 'wh_legacy', 'evt_legacy0', 'delivered', 1, ?, NULL, ?, "
               "NULL, NULL, NULL)", (now - 50, now + 3600))
    db.execute("INSERT INTO attempts VALUES ('dlv_done', 1, ?, 12.5, 200, 'ok', NULL)", (now - 49,))
    db.commit()
    db.close()


async def test_the_old_outbox_is_imported_and_what_it_owed_is_delivered(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    secret = new_secret()
    async with Receiver() as receiver:
        (tmp_path / "state").mkdir()
        write_legacy(tmp_path / "state" / "portway.db", receiver.url, secret)
        with caplog.at_level(logging.WARNING, "portway.engine.webhooks"):
            async with running_engine(tmp_path, FAST) as engine, api(engine) as client:
                (item,) = await receiver.wait_for(lambda got: len(got) >= 1)
                assert item.verified(secret).id == "evt_legacy1"
                (hook,) = (await client.get("/api/webhooks")).json()
                assert hook["id"] == "wh_legacy" and hook["url"] == receiver.url and hook["project_id"] != "default"
                listed = await until_deliveries(client, "wh_legacy",
                                                lambda ds: {d["status"] for d in ds} == {"delivered"})
                done = next(d for d in listed if d["id"] == "dlv_done")
                assert [a["latency_ms"] for a in done["attempts"]] == [12.5]
                owed = next(d for d in listed if d["id"] == "dlv_owed")
                assert owed["attempts"][-1]["status_code"] == 200
        assert not (tmp_path / "state" / "portway.db").exists()
        assert (tmp_path / "state" / "portway.db.imported").exists()
        assert "imported 1 endpoint(s) and 2 delivery(ies) (1 still owed)" in caplog.text
        assert secret not in caplog.text
        # A second start finds nothing to import and keeps what was imported.
        async with running_engine(tmp_path, FAST) as engine, api(engine) as client:
            assert [d["id"] for d in await deliveries(client, "wh_legacy")]


async def test_an_unreadable_old_outbox_is_left_in_place(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "portway.db").write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.ERROR, "portway.engine.webhooks"):
        async with running_engine(tmp_path, FAST) as engine, api(engine) as client:
            assert (await client.get("/api/webhooks")).json() == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot import" in errors[0] and "tried again" in errors[0]
    assert (tmp_path / "state" / "portway.db").exists()
