"""The shape of the code, checked: which package may import which, and how large a file or a
function may grow. Read from the source with `ast`; nothing is imported or run.

The arrows and the limits are described in docs/architecture.md."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "workflows", "activities", "api", "db", "stripe_standin",
            "razorpay_standin", "bench")
MODULES = ("worker.py", "dispatcher.py", "cli_ops.py", "settings.py", "cli.py", "devstack.py",
           "cli_reconcile.py", "schedules.py", "temporal_client.py", "observability.py",
           "faultpoints.py", "payload_codec.py", "cli_settings.py")
FIRST_PARTY = {p for p in PACKAGES} | {m.removesuffix(".py") for m in MODULES} | {"tests"}

# package → the first-party top-level names it must never import
FORBIDDEN: dict[str, set[str]] = {
    "contracts": FIRST_PARTY - {"contracts"},  # stdlib only (checked below too)
    "workflows": FIRST_PARTY - {"contracts", "workflows"},  # sandbox-pure orchestration
    "db": {"workflows", "activities", "api", "worker", "dispatcher", "cli", "settings"},
    "activities": {"api", "workflows", "cli", "worker", "dispatcher"},
    "api": {"activities", "worker", "cli", "dispatcher"},
}
# third-party imports a workflow may use besides the standard library
WORKFLOW_THIRD_PARTY = {"temporalio"}


def product_files() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return sorted(files + [ROOT / m for m in MODULES])


def imported_tops(path: Path) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
    return tops


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_arrows(package: str) -> None:
    wrong = {rel(p): sorted(imported_tops(p) & FORBIDDEN[package])
             for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_contracts_use_the_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"contracts", "__future__"}
    wrong = {rel(p): sorted(imported_tops(p) - allowed) for p in (ROOT / "contracts").rglob("*.py")}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_workflows_import_nothing_with_side_effects() -> None:
    allowed = set(sys.stdlib_module_names) | {"contracts", "workflows", "__future__"}
    allowed |= WORKFLOW_THIRD_PARTY
    wrong = {rel(p): sorted(imported_tops(p) - allowed) for p in (ROOT / "workflows").rglob("*.py")}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_product_file_over_400_lines() -> None:
    sizes = {rel(p): len(p.read_text().splitlines()) for p in product_files()}
    assert {k: n for k, n in sizes.items() if n > 400} == {}


def test_no_function_over_50_lines() -> None:
    long: dict[str, int] = {}
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 50:
                    long[f"{rel(path)}:{node.lineno} {node.name}"] = length
    assert long == {}


def test_each_flow_reads_in_at_most_150_lines() -> None:
    """A file that defines a workflow (one per flow) stays a short story."""
    flows = [p for p in (ROOT / "workflows").glob("*.py") if "@workflow.defn" in p.read_text()]
    assert len(flows) >= 8
    sizes = {rel(p): len(p.read_text().splitlines()) for p in flows}
    assert {k: n for k, n in sizes.items() if n > 150} == {}


def test_nothing_cites_documents_outside_the_repository() -> None:
    texts = {rel(p): p.read_text() for p in product_files()}
    texts.update({rel(p): p.read_text() for p in (ROOT / "docs").glob("*.md")})
    texts["README.md"] = (ROOT / "README.md").read_text()
    cited = sorted(name for name, text in texts.items()
                   if "SPEC §" in text or "SPEC.md" in text or "seeds/" in text)
    assert cited == []
