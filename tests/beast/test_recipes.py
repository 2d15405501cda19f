"""Recipes per env family: chosen from the env id, overridden by flags, recorded in the run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from beast.config import Config
from beast.flags import build_parser, config_from_args
from beast.recipes import RECIPES, recipe_for
from tests.conftest import FAST, run_cli


def parse(*argv: str) -> Config:
    return config_from_args(build_parser("beast.mono").parse_args(list(argv)))


@pytest.mark.parametrize("env_id, backend, expected", [
    ("CartPole-v1", "gymnasium", "classic"),
    ("Acrobot-v1", "gymnasium", "classic"),
    ("Pendulum-v1", "gymnasium", "continuous"),
    ("MountainCarContinuous-v0", "gymnasium", "continuous"),
    ("MinAtar/Breakout-v1", "gymnasium", "minatar"),
    ("ALE/Pong-v5", "gymnasium", "atari"),
    ("Pong-v5", "gymnasium", "atari"),
    ("Pong-v5", "envpool", "atari"),
    ("CoinrunEasy-v0", "envpool", "procgen"),
])
def test_the_recipe_is_chosen_from_the_env_id(env_id: str, backend: str, expected: str) -> None:
    assert recipe_for(env_id, backend) == expected


def test_a_recipe_sets_its_values_and_flags_override_them() -> None:
    atari = parse("--env", "ALE/Pong-v5")
    assert atari.run.recipe == "atari"
    for (group, field), value in RECIPES["atari"].values.items():
        assert getattr(getattr(atari, group), field) == value, field
    overridden = parse("--env", "ALE/Pong-v5", "--learning-rate", "1e-3", "--no-episodic-life")
    assert overridden.optim.learning_rate == 1e-3 and overridden.env.episodic_life is False
    assert overridden.optim.optimizer == "rmsprop"  # the rest of the recipe still holds


def test_recipe_none_and_classic_are_the_bare_defaults() -> None:
    defaults = dataclasses.asdict(Config())
    for argv in (["--env", "ALE/Pong-v5", "--recipe", "none"], ["--recipe", "classic"]):
        config = dataclasses.asdict(parse(*argv))
        recipe = config["run"].pop("recipe")
        expected = json.loads(json.dumps(defaults))
        expected["run"].pop("recipe")
        if recipe == "none":
            expected["env"]["env"] = "ALE/Pong-v5"
        assert json.loads(json.dumps(config)) == expected


def test_an_explicit_recipe_wins_over_the_env_id() -> None:
    config = parse("--env", "CartPole-v1", "--recipe", "minatar")
    assert config.run.recipe == "minatar" and config.env.num_envs == 32


def test_the_run_prints_and_records_its_recipe(tmp_path: Path) -> None:
    result = run_cli("beast.mono", "--env", "Pendulum-v1", *FAST, "--num-actors", "0",
                     "--total-steps", "300", "--savedir", str(tmp_path), "--run-name", "p")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[beast] recipe: continuous (flags override it" in result.stderr
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert saved["run"]["recipe"] == "continuous"
    assert saved["optim"]["learning_rate"] == 1e-3 and saved["env"]["num_envs"] == 8  # flag
    again = run_cli("beast.mono", "--resume", str(tmp_path / "p"), "--recipe", "classic")
    assert again.returncode == 2 and "--recipe applies to new runs" in again.stderr


def test_the_env_list_shows_each_ids_recipe() -> None:
    result = run_cli("beast.envs", "Pendulum-v1")
    assert result.returncode == 0
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["Pendulum-v1", "recipe:", "continuous"]]
