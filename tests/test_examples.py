"""examples/ run with small budgets, so they cannot rot: each asserts what the example shows.

(examples/algo_only.py has its own file, tests/test_examples_algo.py.)
"""

from __future__ import annotations

import importlib.util
import math
from types import ModuleType

import pytest
import torch

from tests.conftest import REPO, alive


def load_example(name: str) -> ModuleType:
    """examples/<name>.py as a module (examples/ is not a package: each file runs on its own)."""
    path = REPO / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- own_loop: your own loop around Learner -------------------------------------------------

def test_own_loop_trains_cartpole_above_random_play() -> None:
    own_loop = load_example("own_loop")
    T, K, steps = 16, 16, 32
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP: one thread is faster, and kinder to a shared machine
    try:
        result = own_loop.main(total_steps=steps * T * K, num_envs=K, unroll_length=T, seed=0,
                               log_every=steps)
    finally:
        torch.set_num_threads(threads)
    assert result["learner_steps"] == steps  # one learner step per [T+1, K] unroll
    assert result["env_steps"] == steps * T * K  # counted at the source, T * K per unroll
    assert result["losses_finite"] == 1.0
    assert result["episodes"] > steps * T * K / 500  # CartPole episodes last at most 500 steps
    # Uniformly random actions average about 22 on CartPole; 32 steps of IMPALA get past 30
    # (37 with this seed; 30 to 37 over seeds 0-3).
    assert result["mean_return"] > 28


# --- remote_vector_env: a plain Gymnasium loop over env servers ------------------------------

def test_remote_loop_matches_the_local_one_and_stops_its_servers() -> None:
    example = load_example("remote_vector_env")
    steps = 510  # past Acrobot's 500-step time limit: truncation and autoreset on every env
    remote = example.main("Acrobot-v1", num_servers=2, num_envs=4, steps=steps, seed=3)
    local = example.main("Acrobot-v1", num_servers=2, num_envs=4, steps=steps, seed=3,
                         local=True)
    assert remote["env_steps"] == local["env_steps"] == steps * 8
    assert len(remote["returns"]) >= 8
    assert remote["returns"] == local["returns"]
    assert remote["reward_sum"] == local["reward_sum"]
    assert remote["obs_sum"] == local["obs_sum"]  # the same trajectories, not just returns
    assert len(remote["server_pids"]) == 2 and remote["exit_codes"] == [0, 0]
    assert not any(alive(pid) for pid in remote["server_pids"])


def test_remote_loop_stops_its_servers_when_the_loop_raises(monkeypatch) -> None:
    example = load_example("remote_vector_env")
    started: list[int] = []
    start = example.start_server

    def recording_start(*args):
        proc, address = start(*args)
        started.append(proc.pid)
        return proc, address

    class Failing(example.RemoteVectorEnv):
        def step(self, actions):
            raise RuntimeError("the training code failed")

    monkeypatch.setattr(example, "start_server", recording_start)
    monkeypatch.setattr(example, "RemoteVectorEnv", Failing)
    with pytest.raises(RuntimeError, match="training code failed"):
        example.main("Acrobot-v1", num_servers=2, num_envs=2, steps=5)
    assert len(started) == 2
    assert not any(alive(pid) for pid in started)


# --- aps_by_hand: the APS controller over simulated actors ----------------------------------

def reference_syncs(rate: float, delta: float, max_lag: int, max_seconds: float | None,
                    learner_steps: int, seconds_per_step: float) -> list[tuple[int, str]]:
    """The rules of beast.sync.aps's docstring, written out for one simulated actor whose
    measured KL is rate x (its lag when measured): smooth with weight 1/2, extrapolate to the
    lag now, sync on delta, then max_lag, then max_seconds."""
    syncs, held, smoothed, last_sync = [(0, "initial")], 0, None, 0.0
    for version in range(1, learner_steps + 1):
        measured = rate * (version - 1 - held)
        smoothed = measured if smoothed is None else 0.5 * smoothed + 0.5 * measured
        estimate = smoothed * (version - held) / max(1, version - 1 - held)
        now = version * seconds_per_step
        if estimate >= delta:
            trigger = "kl"
        elif version - held >= max_lag:
            trigger = "lag"
        elif max_seconds is not None and now - last_sync >= max_seconds:
            trigger = "time"
        else:
            continue
        syncs.append((version, trigger))
        held, smoothed, last_sync = version, None, now
    return syncs


CASES = [  # rates, delta, max_lag, max_seconds
    ((0.004, 0.002, 0.0), 0.01, 8, None),
    ((0.05, 0.0005, 0.0), 0.02, 12, 5.0),
    ((0.01,) * 4, 0.01, 1, None),  # max_lag 1: --sync every-step
]


@pytest.mark.parametrize("rates, delta, max_lag, max_seconds", CASES)
def test_aps_decisions_follow_the_controllers_rules(rates, delta, max_lag, max_seconds) -> None:
    example = load_example("aps_by_hand")
    steps = 40
    decisions = example.main(rates, steps, delta, max_lag, max_seconds, seconds_per_step=1.0)
    for actor, rate in enumerate(rates):
        mine = [(s.version, s.trigger) for s in decisions if s.actor == actor]
        assert mine == reference_syncs(rate, delta, max_lag, max_seconds, steps, 1.0), actor
    for sync in decisions:
        assert sync.lag <= max_lag  # no actor ever falls further behind
        if sync.trigger == "kl":
            assert sync.estimate >= delta
        if sync.trigger == "lag":
            assert sync.lag == max_lag and sync.estimate < delta


def test_aps_cases_exercise_every_trigger_and_drift_orders_the_sync_counts() -> None:
    example = load_example("aps_by_hand")
    triggers = {s.trigger for case in CASES for s in example.main(case[0], 40, *case[1:])}
    assert triggers == {"initial", "kl", "lag", "time"}
    decisions = example.main((0.004, 0.002, 0.0), 40, 0.01, 8)
    counts = [sum(s.actor == actor for s in decisions) for actor in range(3)]
    assert counts[0] > counts[1] >= counts[2]  # the faster a policy drifts, the more it syncs
    assert all(math.isfinite(s.estimate) for s in decisions)


def test_every_beast_name_the_examples_import_is_public() -> None:
    import ast

    import beast

    used = set()
    for path in (REPO / "examples").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("beast"):
                used |= {alias.name for alias in node.names}
    assert used and used <= set(beast.__all__), sorted(used - set(beast.__all__))
