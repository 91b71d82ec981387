"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Sessions, Temporal
from db.migrate import database_revision, schema_problem

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="PostgreSQL and Temporal are reachable, migrations at or past head")
async def readyz(sessions: Sessions, temporal: Temporal) -> JSONResponse:
    checks: dict[str, Any] = {}

    async def db() -> None:
        async with sessions() as session:
            current = await database_revision(session)
        if problem := schema_problem(current):
            raise RuntimeError(problem)

    async def temporal_health() -> None:
        await temporal.service_client.check_health()

    for name, probe in (("postgres", db), ("temporal", temporal_health)):
        try:
            await asyncio.wait_for(probe(), 3)
            checks[name] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"unavailable: {type(e).__name__}: {str(e)[:120]}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unready", "checks": checks},
                        status_code=200 if ready else 503)
