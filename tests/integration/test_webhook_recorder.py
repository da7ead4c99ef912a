"""The webhook recorder on real SQLite and PostgreSQL databases: answers held for recording are released
in order once the events are stored; events nobody subscribed to hold nothing; a failing database delays
the answers (retrying) and, when it keeps failing, releases them with one error logged — never a stall."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import func, select, text

from portway.engine.events import EventBus
from portway.engine.store import Store, list_projects
from portway.engine.store.schema import WebhookDeliveryRow
from portway.engine.webhooks.recorder import Recorder
from portway.engine.webhooks.secret import new_secret
from portway.engine.webhooks.store import WebhookStore

pytestmark = pytest.mark.store


async def _setup(store: Store, stored: list[str] | None = None) -> tuple[Recorder, EventBus, str]:
    hooks = WebhookStore(store)
    (project,) = await list_projects(store)
    await hooks.create_endpoint(project_id=project.id, url="http://127.0.0.1:9/", event_types=["tunnel.created"],
                                enabled=True, secret=new_secret(), now=0)
    recorder = Recorder(hooks, horizon_s=100, clock=time.time,
                        stored=lambda: stored.append("stored") if stored is not None else None)
    await recorder.load()
    bus = EventBus()
    bus.subscribe(recorder.on_event)
    bus.hold_answers(recorder.after_recorded)
    recorder.start()
    return recorder, bus, project.id


async def _deliveries(store: Store) -> int:
    async with store.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDeliveryRow)) or 0)


async def _rename(store: Store, table: str, to: str) -> None:
    async with store.transaction() as session:
        await session.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))


async def test_answers_wait_for_the_events_before_them_and_keep_their_order(store: Store) -> None:
    stored: list[str] = []
    recorder, bus, project = await _setup(store, stored)
    try:
        answered: list[tuple[str, int]] = []
        bus.after_recorded(lambda: answered.append(("nothing queued", -1)))  # at once
        assert answered == [("nothing queued", -1)]
        for n in range(3):
            bus.publish("tunnel.created", {"id": f"t{n}"}, project_id=project)
            bus.publish("tunnel.deleted", {"id": f"t{n}"}, project_id=project)  # nobody wants it
            bus.publish("tunnel.created", {"id": f"x{n}"}, project_id="prj_other")  # another project's
            bus.after_recorded(lambda n=n: answered.append(("answer", n)))
        assert answered == [("nothing queued", -1)]  # held: nothing is stored yet
        await recorder.drain()
        assert answered[1:] == [("answer", 0), ("answer", 1), ("answer", 2)]
        assert await _deliveries(store) == 3 and stored  # the dispatcher was told
        bus.publish("tunnel.deleted", {"id": "t9"}, project_id=project)
        bus.after_recorded(lambda: answered.append(("unwanted event", 9)))
        assert answered[-1] == ("unwanted event", 9)  # nothing to store: not held
    finally:
        await recorder.stop()


async def test_a_transient_failure_delays_the_answer_and_loses_nothing(store: Store,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    recorder, bus, project = await _setup(store)
    try:
        await _rename(store, "webhook_events", "webhook_events_away")  # the next writes fail
        answered = asyncio.Event()
        with caplog.at_level(logging.WARNING, "portway.engine.webhooks"):
            bus.publish("tunnel.created", {"id": "t1"}, project_id=project)
            bus.after_recorded(answered.set)
            await asyncio.sleep(0.15)  # the first attempt failed; retries follow
            assert not answered.is_set()
            await _rename(store, "webhook_events_away", "webhook_events")
            await asyncio.wait_for(answered.wait(), 10)
        assert await _deliveries(store) == 1
        assert "retrying" in caplog.text and "will not be delivered" not in caplog.text
    finally:
        await recorder.stop()


async def test_a_database_that_keeps_failing_releases_the_answers_with_one_error(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    recorder, bus, project = await _setup(store)
    try:
        await _rename(store, "webhook_events", "webhook_events_away")  # the next writes fail
        answered = asyncio.Event()
        with caplog.at_level(logging.WARNING, "portway.engine.webhooks"):
            event = bus.publish("tunnel.created", {"id": "t1"}, project_id=project)
            bus.after_recorded(answered.set)
            await asyncio.wait_for(answered.wait(), 10)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and event.id in errors[0].getMessage()
        assert "will not be delivered" in errors[0].getMessage()
    finally:
        await recorder.stop()
