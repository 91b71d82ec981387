"""The Stripe stand-in's state file is written in the background, coalesced (at most once per
SAVE_INTERVAL_SECONDS) and at shutdown: many changes cost one write, and what was saved
survives a restart, after the background flush and after a clean close."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stripe_standin import store as store_module
from stripe_standin.store import Store
from tests.support import eventually


async def test_changes_coalesce_into_one_write_that_survives_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, writes = tmp_path / "standin.json", []
    real_write = store_module._atomic_write

    def counted(p: Path, text: str) -> None:
        writes.append(len(text))
        real_write(p, text)

    monkeypatch.setattr(store_module, "_atomic_write", counted)
    store = Store(path)
    for i in range(50):  # 50 changes in one burst, each saved
        store.payment_intents[f"pi_{i}"] = {"id": f"pi_{i}", "status": "succeeded"}
        await store.save()
    assert writes == []  # saving does not write inline

    async def on_disk() -> int:
        return len(Store(path).payment_intents) if path.exists() else 0

    assert await eventually(on_disk, lambda n: n == 50) == 50  # after the background flush
    assert len(writes) == 1  # one write for the whole burst

    store.refunds["re_1"] = {"id": "re_1", "status": "pending"}
    await store.save()
    await store.aclose()  # the final flush at shutdown
    restarted = Store(path)
    assert len(restarted.payment_intents) == 50
    assert restarted.refunds["re_1"]["status"] == "pending"


async def test_a_store_without_a_file_writes_nothing(tmp_path: Path) -> None:
    store = Store()
    store.payment_intents["pi_x"] = {"id": "pi_x"}
    await store.save()
    await store.aclose()
    assert not any(os.scandir(tmp_path))
