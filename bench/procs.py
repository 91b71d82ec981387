"""Child processes of a bench part (the API, the worker, the stand-in, each its own process as
scripts/dev.py runs them) and the CPU each process of the stack uses over a window (psutil:
user + system time of the process and its children)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from bench.common import ROOT, BenchError

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port, never one this process handed out already (the kernel may offer a port
    again once its socket is closed, before the child that got it has bound it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def read_tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    def check(self) -> None:
        if self.proc.returncode is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n"
                             f"{read_tail(self.log_path)}")

    async def wait_port(self, port: int, within: float = 90.0) -> None:
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            self.check()
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.2)
        raise BenchError(f"{self.name} did not listen on {port} within {within:.0f}s:\n"
                         f"{read_tail(self.log_path)}")

    async def wait_log(self, needle: str, within: float = 90.0) -> None:
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            self.check()
            if needle in read_tail(self.log_path, 50000):
                return
            await asyncio.sleep(0.2)
        raise BenchError(f"{self.name} did not log {needle!r} within {within:.0f}s:\n"
                         f"{read_tail(self.log_path)}")


async def stop_child(proc: asyncio.subprocess.Process, grace: float = 30.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


def open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


async def spawn(stack: AsyncExitStack, name: str, args: list[str], env: dict[str, str],
                log_dir: Path) -> Child:
    """``args`` as a child process logging to ``log_dir/<name>.log``, stopped (SIGTERM) when
    ``stack`` closes."""
    log_path = log_dir / f"{name}.log"
    logfile = await asyncio.to_thread(open_log, log_path)
    stack.callback(logfile.close)
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=asyncio.subprocess.STDOUT)
    stack.push_async_callback(stop_child, proc)
    return Child(name, proc, log_path)


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The postmaster of ``pgdata`` (its backends are its children)."""
    pid_file = pgdata / "postmaster.pid"
    try:
        return [psutil.Process(int(pid_file.read_text().split()[0]))]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def temporal_process(address: str) -> psutil.Process | None:
    """The dev server child of this process listening on ``address``'s port."""
    port = address.rsplit(":", 1)[-1]
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            if child.name().startswith("temporal") and port in cmd:
                return child
    return None


def _cpu_seconds(proc: psutil.Process, children: bool = True) -> float:
    """User + system CPU seconds of ``proc`` and (``children``) of its children: the live
    ones and those it has reaped (e.g. PostgreSQL's backends that exited)."""
    total = 0.0
    for p in [proc, *(_children(proc) if children else [])]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
            if children:
                total += t.children_user + t.children_system
    return total


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


class ProcCpu:
    """CPU seconds each named process (with its children) spends over a window. PostgreSQL's
    backends come and go; the pool's connections stay, so their time is counted."""

    def __init__(self, procs: dict[str, tuple[psutil.Process, bool]]) -> None:
        """``procs``: name → (process, whether its children count too)."""
        self.procs = procs
        self.started = time.perf_counter()
        self.cpu0 = {name: _cpu_seconds(*p) for name, p in procs.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds per process over the window, and ``wall_s``."""
        out = {name: round(_cpu_seconds(*p) - self.cpu0[name], 3)
               for name, p in self.procs.items()}
        out["wall_s"] = round(time.perf_counter() - self.started, 3)
        return out


def fmt_proc_cpu(cpu: dict[str, float]) -> str:
    wall = cpu.get("wall_s", math.nan)
    parts = [f"{name} {100 * s / wall:.0f}%" for name, s in cpu.items() if name != "wall_s"]
    return f"[CPU, % of one core: {', '.join(parts)}]"
