"""What every benchmark part shares: paths and sizes, the error a part raises, progress lines,
the run's configuration and its results (figures with targets, the summary table)."""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".walletflow" / "bench"
RESULTS_PATH = ROOT / "bench" / "results.json"
BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec_bench_" + secrets.token_hex(8)
STRIPE_KEY = "sk_test_walletflow_bench"
TASK_QUEUE = "walletflow-bench"
API_DB_POOL = 10  # Settings' production default (the tests use 5)
CONCURRENT_STARTERS = 32
LEDGER_TASKS = 8
LEDGER_USERS = 1000
T0 = time.perf_counter()


class BenchError(RuntimeError):
    """A benchmark step could not be carried out (wrong answer, timeout, missing tool)."""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


@dataclass
class BenchConfig:
    quick: bool
    parts: str
    floor_n: int
    topup_n: int
    api_m: int
    memory_k: int
    ledger_seconds: float
    pgbench_seconds: int
    pgbench_scale: int
    keep_postgres: bool
    warmup: int = 3
    mixed_seconds: float = 30.0  # each open-loop window of part m
    stack: str = "file"  # the Temporal dev server: file (as scripts/dev.py), file-plain, memory
    mixed_variant: str = ""  # part m: "K=V,…" → an A/B of that change instead of the search
    mixed_rate: float = 0.0  # part m's A/B: offered flows/s (0: half the floor)

    @property
    def label(self) -> str:
        return "quick" if self.quick else "default"


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str
    target: tuple[str, float] | None = None  # (">=" | "<=", bound)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        if self.value is None:
            return "n/a"
        op, bound = self.target
        ok = self.value >= bound if op == ">=" else self.value <= bound
        return "PASS" if ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "value": self.value, "unit": self.unit,
                "target": f"{self.target[0]} {self.target[1]:g}" if self.target else None,
                "verdict": self.verdict}


@dataclass
class Results:
    config: BenchConfig
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, label: str, value: float | None, unit: str,
            target: tuple[str, float] | None = None) -> None:
        self.figures.append(Figure(key, label, None if value is None else round(value, 3),
                                   unit, target))

    def value(self, key: str) -> float | None:
        return next((f.value for f in self.figures if f.key == key), None)

    def table(self) -> str:
        rows = [("figure", "value", "target", "verdict")]
        for f in self.figures:
            value = "n/a" if f.value is None else f"{f.value:,.{_decimals(f.value)}f} {f.unit}"
            target = f"{f.target[0]} {f.target[1]:g} {f.unit}".rstrip() if f.target else ""
            rows.append((f.label, value.rstrip(), target, f.verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True))))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "config": self.config.__dict__,
                "figures": [f.to_json() for f in self.figures],
                "details": self.details, "errors": self.errors}


def _decimals(value: float) -> int:
    return 0 if abs(value) >= 1000 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
