"""The `walletflow` CLI against the real database: tenants and keys, and the ledger check."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from db.engine import create_engine
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def cli(database_url: str, *args: str) -> tuple[int, str]:
    """The installed command, run from outside the project folder."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "walletflow"), *args, cwd=tempfile.gettempdir(),
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_tenant_created_by_the_cli_can_use_the_api(database_url, http) -> None:
    slug = f"cli-{secrets.token_hex(4)}"
    code, out = await cli(database_url, "tenant", "create", slug, "--admin", "alice")
    assert code == 0, out
    keys = json.loads(out)
    code, out = await cli(database_url, "user", "create", "--tenant", slug, "bob")
    assert (code, out.strip()) == (0, "created")
    r = await http.post("/v1/users", json={"user_id": "carol"},
                        headers={"Authorization": f"Bearer {keys['client_key']}"})
    assert r.status_code == 201
    r = await http.get("/v1/wallets/bob", headers={"Authorization": f"Bearer {keys['client_key']}"})
    assert r.json() == {"user_id": "bob", "balances": [], "cashback": []}
    r = await http.get("/v1/ledger/accounts",
                       headers={"Authorization": f"Bearer {keys['admin_key']}"})
    assert r.status_code == 200
    code, out = await cli(database_url, "user", "create", "--tenant", "no-such-tenant", "x")
    assert code == 2


async def test_ledger_check_exits_non_zero_on_a_violation(database_url, sessions, tenant) -> None:
    code, out = await cli(database_url, "ledger", "check")
    assert code == 0, out
    assert "[1/5] ok" in out and "[5/5] ok" in out  # progress, one line per check
    async with sessions.begin() as s:
        account = (await s.execute(text(
            "INSERT INTO accounts (tenant_id, kind, owner_id, currency, posted) "
            "VALUES (:t, 'fees', 'tenant', 'EUR', 7) RETURNING id"), {"t": tenant.id})).scalar_one()
    try:
        code, out = await cli(database_url, "ledger", "check")
        assert code == 1
        assert "cached balance differs" in out and "do not balance" in out
        assert "VIOLATED: not cached balance differs" in out
    finally:
        async with sessions.begin() as s:
            await s.execute(text("UPDATE accounts SET posted = 0 WHERE id = :id"), {"id": account})
    code, out = await cli(database_url, "ledger", "check")
    assert code == 0, out


async def test_key_rotation_and_wallet_show(database_url, http, sessions, tenant) -> None:
    from tests.test_orders import fund

    await fund(sessions, tenant, 1000)
    key_id = "_".join(tenant.client_key.split("_", 2)[:2])
    code, out = await cli(database_url, "key", "rotate", "--tenant", tenant.slug, key_id)
    assert code == 0, out
    new_key = out.strip()
    old = await http.get("/v1/wallets/user-1", headers=tenant.client)
    assert old.status_code == 401
    new = await http.get("/v1/wallets/user-1", headers={"Authorization": f"Bearer {new_key}"})
    assert new.status_code == 200
    code, out = await cli(database_url, "key", "rotate", "--tenant", tenant.slug, key_id)
    assert code == 2  # already revoked
    code, out = await cli(database_url, "wallet", "show", "--tenant", tenant.slug, "user-1")
    assert code == 0, out
    assert "posted        10.00" in out and "+10.00 EUR" in out, out



async def test_an_unmigrated_database_gets_a_clear_answer(database_url: str) -> None:
    admin = create_engine(database_url, 1)
    name = f"walletflow_empty_{secrets.token_hex(4)}"
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        empty = make_url(database_url).set(database=name).render_as_string(hide_password=False)
        code, out = await cli(empty, "ledger", "check")
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    assert code == 2, out
    assert "run `walletflow migrate` first" in out and "Traceback" not in out

def test_a_relative_state_dir_is_the_project_folders_wherever_a_command_runs(
        monkeypatch) -> None:
    monkeypatch.chdir(tempfile.gettempdir())
    assert Settings(state_dir=Path(".walletflow")).state_dir == ROOT / ".walletflow"
    assert Settings(state_dir=Path("/srv/wf")).state_dir == Path("/srv/wf")
