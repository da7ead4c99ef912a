"""Transactions that a cancelled task still ends properly.

Engine shutdown and a client hanging up on an admin request cancel tasks that may be mid-transaction. Cut
short, a statement leaves its connection mid-protocol: SQLAlchemy then drops it unclosed (aiosqlite's
thread, asyncpg's cancel request) and its pool logs an ERROR, instead of a rollback. So each step of a
transaction (statement, commit, rollback, close) runs in a task of its own that the caller waits for even
when cancelled — for up to `FINISH_TIMEOUT_S` — and the cancellation is raised after it, always.

A step that outlives that wait is abandoned to finish alone; the session is then left to it, and is
rolled back and closed once it ends (`FinishingSession.abandoned`), never touched by two tasks at once: a
block that goes on using it meanwhile gets `SessionAbandoned`. `Store.close` waits for such steps (`settle`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("portway.engine.store")
T = TypeVar("T")
FINISH_TIMEOUT_S = 10.0  # how long a cancelled task still waits for its statement, commit or rollback
_cleanups: set[asyncio.Future[Any]] = set()  # abandoned steps and the closes after them (strong references)


class SessionAbandoned(RuntimeError):
    """A step was asked of a session whose earlier step, abandoned by a cancelled caller, still runs (a block
    that goes on after its cancellation became a TimeoutError, say): refused rather than run beside it."""


class FinishingSession(AsyncSession):
    """An AsyncSession whose statements finish when their task is cancelled; the cancellation takes effect
    right after. `abandoned` is the step left running past `FINISH_TIMEOUT_S`, if any."""

    abandoned: asyncio.Future[Any] | None = None


async def finish(step: Awaitable[T], session: FinishingSession | None = None) -> T:
    """`step`'s result; if the caller is cancelled meanwhile, `step` still runs to its end (however often
    the caller is cancelled again) and the CancelledError is raised after it, whatever the step's outcome."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        deadline = asyncio.get_running_loop().time() + FINISH_TIMEOUT_S
        while not task.done():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait([task], timeout=remaining)
            except asyncio.CancelledError:
                continue  # cancelled again: still finish first; the cancellation is raised below
        if not task.done():
            if session is not None:
                session.abandoned = task
            _cleanups.add(task)
            task.add_done_callback(_cleanups.discard)
            task.add_done_callback(_retrieve)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("a cancelled task's database step then failed: %s", task.exception())
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("an abandoned database step failed: %s", task.exception())


def _finishing(name: str) -> Callable[..., Any]:
    method = getattr(AsyncSession, name)

    @functools.wraps(method)
    async def finishing(self: FinishingSession, *args: Any, **kwargs: Any) -> Any:
        _usable(self)
        return await finish(method(self, *args, **kwargs), self)
    return finishing


for _name in ("execute", "scalar", "scalars", "get", "flush", "delete", "refresh", "merge"):
    setattr(FinishingSession, _name, _finishing(_name))


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[FinishingSession]) -> AsyncIterator[FinishingSession]:
    """A session whose changes commit when the block ends, rolled back on an exception. The block's outcome
    (its exception, a failed commit, or a cancellation) is what propagates: a failing rollback or close
    is logged, never raised in its place."""
    session = sessions()
    try:
        try:
            await finish(session.begin(), session)
            yield session
        except BaseException:
            await _quietly(session, session.rollback, "roll back")
            raise
        _usable(session)
        await finish(session.commit(), session)
    finally:
        await _quietly(session, session.close, "close")


async def _quietly(session: FinishingSession, step: Callable[[], Awaitable[None]], what: str) -> None:
    if session.abandoned is not None:  # the abandoned step still owns the session: end it after that step
        if what == "close":
            _close_after(session, session.abandoned)
        return
    try:  # a close left running ends alone: nothing uses the session after it
        await finish(step(), session if what != "close" else None)
    except asyncio.CancelledError:
        raise
    except Exception as failure:
        log.warning("cannot %s a database session: %s", what, failure)


def _usable(session: FinishingSession) -> None:
    if session.abandoned is not None and not session.abandoned.done():
        raise SessionAbandoned("this database session still runs a step its cancelled caller left behind")


async def settle(timeout: float = FINISH_TIMEOUT_S) -> None:
    """Wait (bounded) for abandoned steps and the closes after them: the store is closed after this."""
    if _cleanups:
        await asyncio.wait(set(_cleanups), timeout=timeout)


def _close_after(session: FinishingSession, running: asyncio.Future[Any]) -> None:
    async def close() -> None:
        await asyncio.wait([running])
        session.abandoned = None
        try:
            await finish(session.close())
        except Exception as failure:
            log.warning("cannot close an abandoned database session: %s", failure)

    task = asyncio.get_running_loop().create_task(close())
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
