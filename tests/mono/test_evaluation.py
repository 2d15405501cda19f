"""Evaluation while training (--eval-every) and of a finished run (--eval RUN): the logged
figures, the best checkpoint, greedy or sampled play, and videos."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from beast.distributions import Categorical, DiagGaussian, MultiDiscrete
from tests.conftest import FAST, run_cli


def eval_rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if k.startswith("eval/")}
                for row in csv.DictReader(f) if row.get("eval/return_mean")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    savedir = tmp_path_factory.mktemp("runs")
    result = run_cli("beast.mono", "--env", "CartPole-v1", *FAST[:4], "--num-actors", "0",
                     "--total-steps", "24000", "--eval-every", "8192", "--eval-episodes", "3",
                     "--eval-video-every", "16384", "--log-steps", "2048",
                     "--savedir", str(savedir), "--run-name", "r", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return savedir / "r", result.stdout


def test_periodic_evaluation_logs_its_figures_and_keeps_the_best_weights(trained) -> None:
    run_dir, stdout = trained
    rows = eval_rows(run_dir)
    assert rows, "no evaluation was logged"
    steps = [r["eval/env_steps"] for r in rows]
    assert steps[0] == 128  # the first weights (one batch of 8 x 16) are evaluated too
    # then at most one per 8192 steps: the first step at which one is due and none running
    assert all(b // 8192 > a // 8192 for a, b in zip(steps, steps[1:]))
    for row in rows:
        # CartPole pays 1 per step: an episode's return is its length
        assert row["eval/return_mean"] == pytest.approx(row["eval/length_mean"])
        assert row["eval/return_std"] >= 0 and math.isfinite(row["eval/return_std"])
    best = max(rows, key=lambda r: r["eval/return_mean"])
    saved = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    assert saved["eval"]["eval/return_mean"] == best["eval/return_mean"]
    assert saved["eval"]["eval/env_steps"] == best["eval/env_steps"]
    latest = torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"]["model"]
    assert saved["learner"]["model"].keys() == latest.keys()
    assert f"best eval return: {best['eval/return_mean']:.1f}" in stdout


def test_periodic_evaluation_records_one_game_per_video_interval(trained) -> None:
    run_dir, stdout = trained
    videos = sorted((run_dir / "videos").glob("step-*-episode-0.mp4"))
    recorded = sorted(int(v.name.split("-")[1]) for v in videos)
    assert recorded and recorded[0] < 16384  # the first evaluation is recorded
    assert len(recorded) == len({s // 16384 for s in recorded})  # at most one per interval
    assert all(v.stat().st_size > 1000 for v in videos)
    assert f"videos:      {run_dir / 'videos'}" in stdout


def test_eval_of_the_best_checkpoint_greedy_with_videos(trained) -> None:
    run_dir, _ = trained
    result = run_cli("beast.mono", "--eval", str(run_dir), "--checkpoint", "best",
                     "--eval-greedy", "--video", "--eval-episodes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean return over 2 episodes" in result.stdout
    assert "greedy policy, best checkpoint" in result.stdout
    for episode in range(2):
        assert (run_dir / "videos" / f"eval-best-episode-{episode}.mp4").stat().st_size > 1000


def test_the_default_eval_samples_the_latest_checkpoint(trained) -> None:
    run_dir, _ = trained
    result = run_cli("beast.mono", "--eval", str(run_dir), "--eval-episodes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampled policy, latest checkpoint" in result.stdout


@pytest.mark.parametrize("flags, message", [
    (["--video"], "--video records the episodes of --eval RUN_DIR"),
    (["--eval-video-every", "100"], "give --eval-every too"),
    (["--checkpoint", "newest"], "--checkpoint must be latest or best"),
    (["--eval-every", "0"], "--eval-every must be >= 1"),
])
def test_bad_evaluation_flags_get_one_line_and_no_run_directory(
        tmp_path: Path, flags: list[str], message: str) -> None:
    result = run_cli("beast.mono", "--env", "CartPole-v1", *flags, "--savedir", str(tmp_path))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_best_checkpoint_of_a_run_without_periodic_evaluation_is_one_line(tmp_path: Path) -> None:
    run = run_cli("beast.mono", *FAST, "--num-actors", "0", "--total-steps", "500",
                  "--savedir", str(tmp_path), "--run-name", "plain")
    assert run.returncode == 0, run.stderr[-3000:]
    result = run_cli("beast.mono", "--eval", str(tmp_path / "plain"), "--checkpoint", "best")
    assert result.returncode == 2 and "--eval-every" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_greedy_mode_is_each_distributions_most_likely_action() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [5.0, 4.9, 0.0]])
    assert Categorical(3).mode(logits).tolist() == [1, 0]
    heads = MultiDiscrete((2, 3), start=(1, -1))
    params = torch.tensor([[0.0, 1.0, 3.0, 2.0, 1.0]])
    assert heads.mode(params).tolist() == [[1 + 1, -1 + 0]]
    gaussian = DiagGaussian((2,))
    mean = np.array([0.5, -2.0], np.float32)
    params = torch.tensor(np.concatenate([mean, [1.0, -3.0]]))[None]
    assert torch.equal(gaussian.mode(params), torch.from_numpy(mean)[None])
