"""Shared test helpers: run the CLIs as real processes and inspect their process trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COUNTING = "tests.envs.counting_env:Counting-v0"

# Small, fast settings for runs in tests (2-core machine): one actor, few envs, frequent logs.
FAST = ["--num-envs", "8", "--unroll-length", "16", "--log-seconds", "0.3",
        "--hidden-sizes", "16"]


def beast_env() -> dict[str, str]:
    """Environment for child processes: the repo root importable (for tests.envs.*)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=beast_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(module: str, *args: str) -> subprocess.Popen:
    """Start a CLI in its own session (so a test can signal its whole process group)."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=beast_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    result, frontier = [], [pid]
    while frontier:
        kids = children(frontier.pop())
        result += kids
        frontier += kids
    return result


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
