"""Production mode: the API, the worker and the CLI refuse to start without their configuration
(one message listing everything missing); secrets stay secret, in the settings and in the
start-up log line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from settings import DEV_STRIPE_KEY, DEV_WEBHOOK_SECRET, MASK, Settings, production_problems
from temporal_client import log_configuration

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NEEDS = ("DATABASE_URL", "TEMPORAL_ADDRESS", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRETS",
         "WALLETFLOW_CODEC_KEYS")
REAL_KEY = "sk_live_" + "x" * 24
REAL_SECRET = "whsec_" + "y" * 24
REAL_CODEC_KEYS = "k1:" + "QUJD" * 10 + "QUI="  # 32 bytes, not the development key


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any walletflow, Temporal or Stripe setting, and a
    home with no Temporal config file."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TEMPORAL_", "STRIPE_", "WALLETFLOW_", "DATABASE_URL"))}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **extra}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read the environment: these tests start from a clean one."""
    with tempfile.TemporaryDirectory() as home:
        for k, v in clean_env(Path(home)).items():
            monkeypatch.setenv(k, v)
        for k in list(os.environ):
            if k.startswith(("TEMPORAL_", "STRIPE_", "WALLETFLOW_", "DATABASE_URL")):
                monkeypatch.delenv(k)
        yield


def test_development_is_the_default_and_needs_nothing() -> None:
    s = Settings()
    assert s.walletflow_env == "development" and s.database_url is None
    assert production_problems(s) == [
        "DATABASE_URL (production never starts an embedded PostgreSQL)",
        "TEMPORAL_ADDRESS, or a Temporal config profile with an address (TEMPORAL_CONFIG_FILE /"
        " TEMPORAL_PROFILE)",
        "STRIPE_API_KEY: a real Stripe key (not the stand-in's development key)",
        "STRIPE_WEBHOOK_SECRETS: your Stripe endpoint's signing secret(s), not the development"
        " default",
        "WALLETFLOW_CODEC_KEYS: your own payload encryption key(s), not the development key",
    ]


_PROFILE = st.sampled_from(["address", "profile", "profile-without-address", "missing-file",
                            "none"])


@hsettings(max_examples=60, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(database=st.booleans(), temporal=_PROFILE,
       key=st.sampled_from([DEV_STRIPE_KEY, "sk_test_walletflow", "sk_test_walletflow_x", "",
                            REAL_KEY, "sk_test_51Hreal"]),
       hooks=st.sampled_from([DEV_WEBHOOK_SECRET, f"{REAL_SECRET},{DEV_WEBHOOK_SECRET}", " , ",
                              REAL_SECRET, f"{REAL_SECRET},whsec_older"]))
def test_production_lists_exactly_what_is_missing(database: bool, temporal: str, key: str,
                                                 hooks: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "temporal.toml"
        profile.write_text('[profile.prod]\naddress = "temporal.internal:7233"\n'
                           if temporal == "profile" else '[profile.prod]\nnamespace = "x"\n')
        values: dict[str, object] = {
            "walletflow_env": "production", "stripe_api_key": key, "stripe_webhook_secrets": hooks,
            "walletflow_codec_keys": REAL_CODEC_KEYS}
        if database:
            values["database_url"] = "postgresql://wf:pw@db.internal/wf?sslmode=verify-full"
        if temporal == "address":
            values["temporal_address"] = "temporal.internal:7233"
        elif temporal in ("profile", "profile-without-address"):
            values.update(temporal_config_file=profile, temporal_profile="prod")
        elif temporal == "missing-file":
            values["temporal_config_file"] = Path(tmp) / "nope.toml"
        missing = {
            "DATABASE_URL": not database,
            "TEMPORAL_": temporal not in ("address", "profile"),
            "STRIPE_API_KEY": not key or key.startswith("sk_test_walletflow"),
            "STRIPE_WEBHOOK_SECRETS": DEV_WEBHOOK_SECRET in hooks or not hooks.strip(" ,"),
        }
        if not any(missing.values()):
            assert Settings(**values).walletflow_env == "production"  # type: ignore[arg-type]
            return
        with pytest.raises(ValidationError) as e:
            Settings(**values)  # type: ignore[arg-type]
        message = str(e.value)
        assert "WALLETFLOW_ENV=production needs" in message
        problems = [line for line in message.splitlines() if line.startswith("  - ")]
        assert len(problems) == sum(missing.values()), message
        for what, is_missing in missing.items():
            assert any(p.startswith(f"  - {what}") or what in p for p in problems) == is_missing
        if temporal == "missing-file":
            assert "nope.toml does not exist" in message


async def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode()


async def test_worker_api_and_cli_refuse_to_start_in_production_without_configuration(
        tmp_path: Path, database_url: str) -> None:
    env = clean_env(tmp_path, WALLETFLOW_ENV="production")
    worker, api, cli, cli_ok = await asyncio.gather(
        run([sys.executable, "worker.py"], env),
        run([sys.executable, "-m", "uvicorn", "--factory", "api.app:app_factory",
             "--port", "0"], env),
        run([str(BIN / "walletflow"), "migrate"], env, cwd=tmp_path),
        # everything configured: the CLI starts (and finds no such tenant)
        run([str(BIN / "walletflow"), "wallet", "show", "--tenant", "no-such-tenant", "bob"],
            {**env, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": "temporal.internal:7233",
             "STRIPE_API_KEY": REAL_KEY, "STRIPE_WEBHOOK_SECRETS": REAL_SECRET,
             "WALLETFLOW_CODEC_KEYS": REAL_CODEC_KEYS}, cwd=tmp_path))
    for name, (code, out) in {"worker": worker, "api": api, "cli": cli}.items():
        assert code == 2, (name, out)
        assert "WALLETFLOW_ENV=production needs" in out, (name, out)
        for need in NEEDS:
            assert need in out, (name, need, out)
        assert "Traceback" not in out, (name, out)
    assert cli_ok == (2, "not found: no-such-tenant\n"), cli_ok


def test_secrets_are_secret_strings_masked_everywhere() -> None:
    s = Settings(stripe_api_key="k-" + secrets.token_hex(8),
                 stripe_webhook_secrets="a-" + secrets.token_hex(8) + ",b-" + secrets.token_hex(8),
                 temporal_api_key="t-" + secrets.token_hex(8),
                 database_url="postgresql://wf:pw-" + secrets.token_hex(8) + "@db/wf")
    for secret in (s.stripe_api_key, s.stripe_webhook_secrets, s.temporal_api_key):
        assert isinstance(secret, SecretStr)
    values = [s.stripe_api_key.get_secret_value(), *s.webhook_secrets,
              s.temporal_api_key.get_secret_value() if s.temporal_api_key else "",
              "pw-" + (s.database_url or "").split("pw-")[1].split("@")[0]]
    for shown in (repr(s), str(s), json.dumps(s.masked())):
        for value in values:
            assert value not in shown
    assert len(s.webhook_secrets) == 2
    assert s.masked()["database_url"] == "postgresql://wf:***@db/wf"


def test_effective_configuration_is_logged_once_with_secrets_masked(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    profile = tmp_path / "temporal.toml"
    profile.write_text('[profile.default]\naddress = "temporal.internal:7233"\n'
                       f'api_key = "profile-{secrets.token_hex(8)}"\n')
    plain = {"stripe_api_key": "stripe-" + secrets.token_hex(8),
             "stripe_webhook_secrets": "hook-" + secrets.token_hex(8),
             "temporal_api_key": "temporal-" + secrets.token_hex(8)}
    password = "pw-" + secrets.token_hex(8)
    s = Settings(**plain, temporal_config_file=profile,  # type: ignore[arg-type]
                 database_url=f"postgresql://wf:{password}@db.internal/wf")
    with caplog.at_level(logging.INFO, logger="walletflow.config"):
        log_configuration(s, "worker")
    records = [r for r in caplog.records if r.name == "walletflow.config"]
    assert len(records) == 1
    line = records[0].getMessage()
    for value in [*plain.values(), password, profile.read_text().split('"')[3]]:
        assert value not in line
    config = json.loads(line.split(": ", 1)[1])
    assert {k: config["settings"][k] for k in plain} == dict.fromkeys(plain, MASK)
    assert config["settings"]["database_url"] == "postgresql://wf:***@db.internal/wf"
    assert config["temporal"]["address"] == "temporal.internal:7233"
    assert config["temporal"]["api_key"] == MASK and config["temporal"]["tls"] is True
