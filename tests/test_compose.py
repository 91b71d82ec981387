"""docker-compose.yml, checked without a Docker engine: it parses, its dependency graph is whole
and acyclic, what a service waits on can be waited on (a healthcheck for `service_healthy`, a
one-shot for `service_completed_successfully`), images are pinned, and the API and the workers
get every variable production needs — and only variables the code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "docker-compose.yml"
OFFLINE = ROOT / "ops" / "compose.offline.yml"
OFFLINE_ENV = ROOT / "ops" / "offline.env"
PRODUCT = ("api", "activities", "contracts", "db", "workflows", "worker.py", "dispatcher.py",
           "settings.py", "cli.py", "temporal_client.py", "observability.py")
# What the API and the workers cannot run in production without.
PRODUCTION_NEEDS = {"DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE",
                    "TEMPORAL_TASK_QUEUE", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRETS",
                    "WALLETFLOW_CODEC_KEYS"}
ONE_SHOT = re.compile(r"^(no|on-failure(:\d+)?)$")
LONG_RUNNING = {"always", "unless-stopped"}
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?])?([^}]*)\}")


def load(*files: Path) -> dict[str, Any]:
    """The files merged as `docker compose -f … -f …` does for what is checked here: a later
    file's service adds to (or overrides keys of) an earlier one's."""
    merged: dict[str, Any] = {"services": {}}
    for f in files:
        doc = yaml.safe_load(f.read_text())
        for name, svc in doc["services"].items():
            merged["services"][name] = {**merged["services"].get(name, {}), **svc}
        merged.update({k: v for k, v in doc.items() if k != "services"})
    return merged


def depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (cond or {}).get("condition", "service_started") for name, cond in deps.items()}


def code_reads() -> set[str]:
    """Every environment variable the product reads: the Settings fields (pydantic-settings
    takes them case-insensitively) and each literal `os.environ.get("X")` / `os.getenv("X")` /
    `os.environ["X"]`."""
    names = {f.upper() for f in Settings.model_fields}
    files = [p for entry in PRODUCT for p in
             ((ROOT / entry).rglob("*.py") if (ROOT / entry).is_dir() else [ROOT / entry])]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "os.environ.get", "os.getenv") and node.args:
                arg = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                arg = node.slice
            else:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


SETUPS = {"production": (BASE,), "offline": (BASE, OFFLINE)}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_every_dependency_exists_and_the_graph_has_no_cycle(setup: str) -> None:
    services = load(*SETUPS[setup])["services"]
    missing = {(n, d) for n, s in services.items() for d in depends(s) if d not in services}
    assert missing == set()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        assert state.get(name) != "open", f"cycle: {' -> '.join([*path, name])}"
        if state.get(name) == "done":
            return
        state[name] = "open"
        for dep in depends(services[name]):
            visit(dep, [*path, name])
        state[name] = "done"

    for name in services:
        visit(name, [])


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_what_a_service_waits_on_can_be_waited_on(setup: str) -> None:
    services = load(*SETUPS[setup])["services"]
    for name, svc in services.items():
        for dep, condition in depends(svc).items():
            target = services[dep]
            if condition == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), f"{name} waits on {dep}"
            elif condition == "service_completed_successfully":
                assert ONE_SHOT.match(str(target.get("restart", "no"))), f"{dep} is no one-shot"
                assert "healthcheck" not in target and "ports" not in target, dep
            else:
                assert condition == "service_started", (name, dep, condition)
        one_shot = any(depends(s).get(name) == "service_completed_successfully"
                       for s in services.values())
        restart = str(svc.get("restart"))
        assert ONE_SHOT.match(restart) if one_shot else restart in LONG_RUNNING, (name, restart)


def test_the_start_order() -> None:
    services = load(BASE)["services"]
    assert depends(services["temporal"]) == {"temporal-schema": "service_completed_successfully"}
    schema_job = services["temporal-schema"]["command"][0]
    for step in ("create", "setup-schema", "update-schema", "temporal_visibility"):
        assert step in schema_job
    for app in ("api", "worker"):
        deps = depends(services[app])
        assert deps["migrate"] == deps["temporal-namespace"] == "service_completed_successfully"
        assert deps["postgres"] == deps["temporal"] == "service_healthy"
        assert services[app]["healthcheck"]["test"]
    assert services["migrate"]["command"] == ["walletflow", "migrate"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["worker"]  # scaled: no fixed host port
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"].startswith(
        "http://localhost:8000/")
    worker = services["worker"]
    port = worker["environment"]["WORKER_HEALTH_ADDRESS"].rsplit(":", 1)[1]
    assert f":{port}/readyz" in " ".join(worker["healthcheck"]["test"])


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_images_are_pinned(setup: str) -> None:
    for name, svc in load(*SETUPS[setup])["services"].items():
        image = svc.get("image", "")
        repo, _, tag = image.rpartition(":") if ":" in image else (image, "", "")
        if image == "walletflow:dev":  # this project, built from the working tree
            assert "build" in svc or setup == "offline", name
            continue
        assert repo and tag and tag != "latest", f"{name}: {image!r} is not pinned"
        assert "auto-setup" not in repo, f"{name}: temporalio/auto-setup is deprecated"


def test_the_api_and_the_workers_get_what_production_needs_and_nothing_unread() -> None:
    services = load(BASE)["services"]
    reads = code_reads()
    needs = PRODUCTION_NEEDS | ({"WALLETFLOW_ENV"} if "WALLETFLOW_ENV" in reads else set())
    for app in ("api", "worker", "migrate"):
        env = set(services[app]["environment"])
        assert needs - env == set(), app
        assert env - reads == set(), f"{app} sets variables no code reads"
    assert {"WORKER_METRICS_ADDRESS", "WORKER_HEALTH_ADDRESS"} <= set(
        services["worker"]["environment"])


def test_secrets_have_no_default_and_the_offline_env_supplies_them() -> None:
    text = BASE.read_text() + OFFLINE.read_text()
    uses = INTERPOLATION.findall(text)
    required = {name for name, op, _ in uses if op in ("?", ":?")}
    bare = {name for name, op, _ in uses if not op}
    assert bare == set(), "a variable without a default or an error message"
    assert {"POSTGRES_PASSWORD", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRETS"} <= required
    offline = dict(line.split("=", 1) for line in OFFLINE_ENV.read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required - set(offline) == set()
    assert set(offline) - {name for name, _, _ in uses} == set(), "offline.env sets unused names"
    assert offline["WALLETFLOW_ENV"] == "development"
    assert "${WALLETFLOW_ENV:-production}" in BASE.read_text()
