"""examples/algo_only.py, the `beast.algo`-only example, runs and learns on a small budget.

Loaded by path (examples/ is not a package). Serial and seeded, so the run repeats exactly on
one torch build; the threshold leaves a wide margin: over seeds 0-9 at this budget the last
20 episodes averaged 101-157, the first 20 (a near-uniform policy, like random play) 14-24."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator

import pytest
import torch

from tests.conftest import REPO

BUDGET = 30_000  # env steps: 468 updates of 8 envs x 8 steps, a few seconds on one thread


@pytest.fixture
def one_thread() -> Iterator[None]:
    """What the example's __main__ sets: tiny tensors run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_example():
    spec = importlib.util.spec_from_file_location("algo_only", REPO / "examples" / "algo_only.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_algo_only_example_learns_cartpole(one_thread: None) -> None:
    result = load_example().main(total_steps=BUDGET, seed=0)
    losses, returns = result["losses"], result["returns"]
    assert len(losses) == BUDGET // (8 * 8)
    assert all(math.isfinite(x) for x in losses)
    assert len(returns) >= 40
    first, last = sum(returns[:20]) / 20, sum(returns[-20:]) / 20
    assert last > 50 and last > 2.5 * first, (first, last)
