"""The outbox dispatcher through a PostgreSQL outage: one warning when it starts (the error, no
traceback), backoff while it lasts, one line when it is over; an error that is not an outage
(here: a database without the schema) keeps its traceback.

The outage is real: the dispatcher's sessions point at a closed port on 127.0.0.1 (asyncpg's
own connection error), then back at the session's database."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, session_factory
from dispatcher import Dispatcher
from tests.conftest import TASK_QUEUE
from tests.support import eventually


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _running(dispatcher: Dispatcher) -> AsyncIterator[None]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(check: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return check()
    await eventually(probe, bool, within=60)


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dispatcher" and r.levelno == level]


async def test_an_outage_is_one_warning_then_one_recovery_line(
        temporal_env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher")
    down = create_engine(f"postgresql+asyncpg://walletflow:x@127.0.0.1:{_closed_port()}/none",
                         1, pre_ping=False)
    # The session's task queue: deliveries other tests left are started as their worker expects.
    dispatcher = Dispatcher(temporal_env.client, session_factory(down), TASK_QUEUE,
                            interval=0.01, max_backoff=0.05)
    try:
        async with _running(dispatcher):
            for outage in (1, 2):
                dispatcher.sessions = session_factory(down)
                await _until(lambda: dispatcher.failed_rounds >= 12)
                assert dispatcher.outage_since is not None
                dispatcher.sessions = sessions  # PostgreSQL is back
                await _until(lambda: dispatcher.outage_since is None)
                warnings = _records(caplog, logging.WARNING)
                resumed = _records(caplog, logging.INFO)
                # one warning and one recovery line per outage, however many rounds failed
                assert len(warnings) == outage, [r.getMessage() for r in warnings]
                assert len(resumed) == outage, [r.getMessage() for r in resumed]
                assert "PostgreSQL unavailable (ConnectionRefusedError" in warnings[-1].message
                assert "outage lasted" in resumed[-1].getMessage()
                assert resumed[-1].args[1] >= 12  # type: ignore[index] - the failed rounds
    finally:
        await down.dispose()
    assert _records(caplog, logging.ERROR) == []
    assert all(r.exc_info is None for r in caplog.records if r.name == "dispatcher")
    assert "Traceback" not in caplog.text


async def test_an_error_that_is_not_an_outage_keeps_its_traceback(
        temporal_env: WorkflowEnvironment, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher")
    # The same server, a database without walletflow's tables: the statement fails, not the
    # connection.
    server, _, name = database_url.rpartition("/")
    query = name.partition("?")[2]
    bare = create_engine(f"{server}/postgres{'?' + query if query else ''}", 1, pre_ping=False)
    dispatcher = Dispatcher(temporal_env.client, session_factory(bare), TASK_QUEUE,
                            interval=0.01, max_backoff=0.05)
    try:
        async with _running(dispatcher):
            await _until(lambda: len(_records(caplog, logging.ERROR)) >= 2)
    finally:
        await bare.dispose()
    errors = _records(caplog, logging.ERROR)
    assert all(r.exc_info is not None for r in errors)
    assert "UndefinedTable" in caplog.text or "does not exist" in caplog.text
    assert dispatcher.outage_since is None and _records(caplog, logging.WARNING) == []
