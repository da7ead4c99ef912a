"""`finish` (store/finishing.py): a cancelled caller still lets its database step run to the end, and the
cancellation always comes out of it — never the step's own result or error in its place."""

from __future__ import annotations

import asyncio
import logging

import pytest

from portway.engine.store import finishing


async def step(started: asyncio.Event, release: asyncio.Event, outcome: BaseException | None = None) -> str:
    started.set()
    await release.wait()
    if outcome is not None:
        raise outcome
    return "done"


async def cancelled_while(outcome: BaseException | None, cancels: int) -> tuple[asyncio.Task[str], list[str]]:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def caller() -> str:
        try:
            return await finishing.finish(step(started, release, outcome))
        finally:
            ran.append("finished" if release.is_set() else "cut short")

    task = asyncio.create_task(caller())
    await started.wait()
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for its step
    release.set()
    await asyncio.gather(task, return_exceptions=True)
    return task, ran


async def test_the_step_finishes_then_the_cancellation_is_raised() -> None:
    task, ran = await cancelled_while(None, cancels=1)
    assert task.cancelled() and ran == ["finished"]


async def test_cancelled_again_while_waiting_still_finishes_first() -> None:
    task, ran = await cancelled_while(None, cancels=3)
    assert task.cancelled() and ran == ["finished"]


async def test_a_step_failing_after_the_cancellation_does_not_swallow_it(caplog: pytest.LogCaptureFixture) -> None:
    """A caller catching `Exception` around a store call must still see its cancellation (else a loop that
    logs and retries would never stop)."""
    with caplog.at_level(logging.WARNING, "portway.engine.store"):
        task, ran = await cancelled_while(OSError("database is locked"), cancels=1)
    assert task.cancelled() and ran == ["finished"]
    assert [r.getMessage() for r in caplog.records] == [
        "a cancelled task's database step then failed: database is locked"]


async def test_without_cancellation_the_result_and_errors_pass_through() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    release.set()
    assert await finishing.finish(step(started, release)) == "done"
    with pytest.raises(OSError, match="gone"):
        await finishing.finish(step(started, release, OSError("gone")))


async def test_a_step_outliving_the_wait_is_abandoned_with_its_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finishing, "FINISH_TIMEOUT_S", 0.05)
    started, release = asyncio.Event(), asyncio.Event()
    session = finishing.FinishingSession()
    task = asyncio.create_task(finishing.finish(step(started, release), session))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.abandoned is not None and not session.abandoned.done()
    release.set()
    assert await session.abandoned == "done"


async def test_an_abandoned_session_refuses_further_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that goes on after its cancellation (turned into a TimeoutError by `asyncio.timeout`, say) may
    not start a step beside the one still running on the session."""
    monkeypatch.setattr(finishing, "FINISH_TIMEOUT_S", 0.05)
    started, release = asyncio.Event(), asyncio.Event()
    session = finishing.FinishingSession()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await finishing.finish(step(started, release), session)
    with pytest.raises(finishing.SessionAbandoned):
        await session.execute(None)  # type: ignore[arg-type]  # refused before reaching any database
    release.set()
    await finishing.settle(1.0)
    assert session.abandoned is not None and session.abandoned.done()
