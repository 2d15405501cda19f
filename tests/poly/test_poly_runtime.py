"""PolyBeast end to end: parity with MonoBeast's data path, failures, and learning CartPole."""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from beast.acting import UnrollWorker
from beast.config import Config, EnvConfig, ModelConfig, PolyConfig, RunConfig
from beast.envs import make_vector_env
from beast.learner import Learner
from beast.models import PolicyValueMLP, build_model
from beast.objectives import build_objective
from beast.poly.sources import PolySource
from beast.rollout import RolloutSpec
from tests.conftest import (COUNTING, FAST, alive, beast_env, descendants, run_cli, start_cli,
                            wait_for)

T, K = 6, 3


def deterministic_model(envs) -> PolicyValueMLP:
    """A policy that picks action 1 with probability ~1, so both runtimes act identically."""
    torch.manual_seed(0)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,)))
    assert isinstance(model, PolicyValueMLP)
    with torch.no_grad():
        model.policy.weight.zero_()
        model.policy.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
    return model


def test_same_batch_same_loss_in_mono_and_poly(monkeypatch) -> None:
    import tests.envs.counting_env  # noqa: F401

    monkeypatch.setenv("PYTHONPATH", beast_env()["PYTHONPATH"])  # the server imports tests.*
    config = Config(env=EnvConfig(env=COUNTING, num_envs=K),
                    run=RunConfig(num_actors=1, unroll_length=T),
                    poly=PolyConfig(num_servers=1))
    envs = make_vector_env(COUNTING, K)
    model = deterministic_model(envs)
    worker = UnrollWorker(envs, copy.deepcopy(model), T, seed=0)
    spec = RolloutSpec.build(envs.single_observation_space, model)

    def learner() -> Learner:
        return Learner(copy.deepcopy(model), build_objective(config.loss, model),
                       config.optim, 10**6)

    source = PolySource(config, copy.deepcopy(model), envs.single_observation_space,
                        envs.single_action_space, generation=0, log=lambda text: None)
    source.publish_weights(learner())
    try:
        for _ in range(3):  # three consecutive unrolls, step 0 carried over each time
            slot = spec.allocate((T + 1, K))
            worker.fill(slot, version=0)
            poly = None
            deadline = time.monotonic() + 30
            while poly is None and time.monotonic() < deadline:
                poly = source.next_batch(timeout=1.0)
            assert poly is not None, "no batch from the actor pool"
            assert poly.owners == (0,)  # the one central inference copy acted all of it
            assert set(poly.data) == set(slot)
            for key, value in slot.items():
                np.testing.assert_allclose(poly.data[key].numpy(), value, rtol=1e-6, atol=1e-6,
                                           err_msg=key)
                assert poly.data[key].dtype == torch.from_numpy(value).dtype, key
            losses = []
            for batch in (poly.data, {k: torch.from_numpy(v) for k, v in slot.items()}):
                losses.append(learner().step(batch, env_steps=0).metrics["loss/total"])
            assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    finally:
        source.close()


def test_killed_local_env_server_is_restarted_and_training_goes_on(run_dir: Path) -> None:
    from tests.poly.test_reconnect import LiveRun

    run = LiveRun("--total-steps", "100000000", "--savedir", str(run_dir.parent),
                  "--run-name", run_dir.name)
    try:
        assert wait_for(lambda: (run_dir / "logs.csv").exists(), timeout=60)
        servers = subprocess.run(["pgrep", "-f", "beast.poly.env_server", "-P",
                                  str(run.process.pid)], capture_output=True, text=True)
        pids = [int(p) for p in servers.stdout.split()]
        assert len(pids) == 1, servers
        os.kill(pids[0], signal.SIGKILL)
        run.wait_for_line("came back as")
        run.wait_for_line("reconnected to")
        run.wait_for_steps_past(run_dir, run.steps(run_dir))
        code = run.interrupt()
    finally:
        run.kill()
    assert code == 128 + signal.SIGINT, run.stderr()
    assert "run failed" not in run.stderr()
    assert "actor pool: connection 0" in run.stderr() and "lost: ConnectionError" in run.stderr()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_poly_in_order_and_leaves_no_child(run_dir: Path, signum: int) -> None:
    process = start_cli("beast.poly", *FAST, "--total-steps", "100000000",
                        "--savedir", str(run_dir.parent), "--run-name", run_dir.name)
    try:
        assert wait_for(lambda: (run_dir / "logs.csv").exists(), timeout=60)
        family = descendants(process.pid)
        assert family, "the launcher should have started an env server"
        os.killpg(process.pid, signum)  # SIGINT to the group: like Ctrl-C in a terminal
        code = process.wait(timeout=10)
        stderr = process.stderr.read()
        assert wait_for(lambda: not any(alive(pid) for pid in family), timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 128 + signum, stderr[-3000:]
    assert f"{signal.Signals(signum).name}: stopping" in stderr
    assert (run_dir / "checkpoint.pt").exists()


def test_poly_cartpole_learns_within_step_budget(run_dir: Path) -> None:
    result = run_cli("beast.poly", "--env", "CartPole-v1", "--num-actors", "2",
                     "--num-envs", "32", "--total-steps", "400000", "--target-return", "150",
                     "--log-seconds", "1", "--seed", "1", "--savedir", str(run_dir.parent),
                     "--run-name", run_dir.name, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with (run_dir / "logs.csv").open(newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["mean_return"]) >= 150, f"mean return {last['mean_return']}"
    # the run directory is MonoBeast's format: --eval, --resume and beast.plot work on it
    evaluated = run_cli("beast.poly", "--eval", str(run_dir), "--eval-episodes", "3")
    assert evaluated.returncode == 0 and "mean return over 3 episodes" in evaluated.stdout
    resumed = run_cli("beast.poly", "--resume", str(run_dir), "--total-steps",
                      str(int(float(last["env_steps"])) + 20000), timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["stats"]["resumes"] == 1
    assert run_cli("beast.plot", str(run_dir)).returncode == 0 and (run_dir / "plot.png").exists()


@pytest.mark.parametrize("mode", ["periodic", "aps"])
def test_sync_controller_gates_the_inference_model_copy(run_dir: Path, mode: str) -> None:
    result = run_cli("beast.poly", *FAST, "--sync", mode, "--sync-period", "8",
                     "--total-steps", "30000", "--savedir", str(run_dir.parent),
                     "--run-name", run_dir.name, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with (run_dir / "logs.csv").open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f)]
    row = rows[-1]  # counters are cumulative; per-step metrics are averaged per row
    lag_max = max(r["learner/lag_max"] for r in rows if "learner/lag_max" in r)
    steps, syncs = row["version"], row["aps/syncs_total"]
    assert row["aps/trigger_initial"] == 1 and steps > 100
    if mode == "periodic":
        assert syncs == 1 + steps // 8 and row["aps/trigger_lag"] == steps // 8
        # lag: under a period for the inference copy, plus unrolls queued (2), in the pool (1)
        # and the one being written (1)
        assert lag_max <= 8 + 4
    else:
        assert 1 <= syncs < steps and row["aps/trigger_kl"] + row["aps/trigger_lag"] == syncs - 1


@pytest.mark.parametrize("loss, own", [("impact", "target.baseline.weight"),
                                       ("vmpo", "raw_eta")])
def test_poly_trains_with_the_other_losses(run_dir: Path, loss: str, own: str) -> None:
    """The objective is built by the shared training driver, so PolyBeast gets every --loss."""
    result = run_cli("beast.poly", *FAST, "--loss", loss, "--total-steps", "4000",
                     "--savedir", str(run_dir.parent), "--run-name", run_dir.name, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    learner = torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"]
    assert own in learner["objective"] and int(learner["objective"]["steps"]) == learner["version"]
    with (run_dir / "logs.csv").open(newline="") as f:
        assert any(name.startswith(f"{loss}/") for name in next(csv.DictReader(f)))
