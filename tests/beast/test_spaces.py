"""Observation spaces beyond Box: Discrete (one-hot), Dict and Tuple (one torso per entry),
packed losslessly into the one array every runtime carries; unsupported spaces get one line."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from beast.config import ModelConfig
from beast.envs import make_vector_env
from beast.envs.spaces import PackedBox, PackObservation, adapt_spaces
from beast.models import build_model
from beast.models.encoders import EntryTorso, FlatEncoder

import tests.envs.dict_env  # noqa: F401  (registers DictDirection-v0, DiscreteObs-v0)

DICT_ENV = "tests.envs.dict_env:DictDirection-v0"


def test_a_dict_observation_packs_losslessly_in_the_narrowest_dtype() -> None:
    env = gym.make("DictDirection-v0")
    space = PackedBox(env.observation_space)
    assert space.dtype == np.float32  # a float entry forces float; uint8 and Discrete(4) fit
    assert space.shape == (5 * 5 * 3 + 1 + 2,)
    obs, _ = env.reset(seed=0)
    packed = space.pack(obs)
    assert packed.dtype == np.float32 and space.contains(packed)
    entries = {e.name: e for e in space.entries}
    image = entries["image"]
    np.testing.assert_array_equal(packed[image.offset:image.offset + image.size].reshape(5, 5, 3),
                                  obs["image"])
    assert packed[entries["direction"].offset] == obs["direction"]
    np.testing.assert_array_equal(packed[entries["position"].offset:], obs["position"])
    small = PackedBox(gym.spaces.Dict({"a": gym.spaces.Box(0, 255, (2,), np.uint8),
                                       "b": gym.spaces.Discrete(7)}))
    assert small.dtype == np.uint8


def test_discrete_entries_are_one_hot_and_boxes_flattened() -> None:
    space = PackedBox(gym.spaces.Tuple((gym.spaces.Discrete(3, start=1),
                                        gym.spaces.Box(-1, 1, (2, 2), np.float32))))
    encoder = FlatEncoder(space)
    assert encoder.out_size == 3 + 4
    obs = torch.tensor([[2.0, 0.1, 0.2, 0.3, 0.4], [3.0, -1.0, 0.0, 1.0, 0.5]])
    torch.testing.assert_close(encoder(obs), torch.tensor([[0, 1, 0, 0.1, 0.2, 0.3, 0.4],
                                                           [0, 0, 1, -1.0, 0.0, 1.0, 0.5]]))


def test_vector_envs_serve_packed_observations_and_models_read_them() -> None:
    envs = make_vector_env(DICT_ENV, 3)
    assert isinstance(envs.single_observation_space, PackedBox)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 78)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(16,)))
    assert isinstance(model.torso, EntryTorso) and len(model.torso.images) == 1
    output = model(torch.from_numpy(obs))
    assert output.policy_params.shape == (3, 4) and output.baseline.shape == (3,)
    # the image entry (channels-last [5, 5, 3]) goes through the CNN as [3, 5, 5]
    assert model.torso.image_layout[0][3] is True
    frozen = make_vector_env("FrozenLake-v1", 2)
    assert frozen.reset(seed=0)[0].shape == (2, 1)
    lake = build_model(frozen.single_observation_space, frozen.single_action_space, ModelConfig())
    assert lake.encoder.out_size == 16


def test_unsupported_observation_spaces_are_named_in_one_line() -> None:
    class TextEnv(gym.Env):
        observation_space = gym.spaces.Dict({"ok": gym.spaces.Discrete(2),
                                             "words": gym.spaces.Text(5)})
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(ValueError, match="unsupported observation entry 'words'") as info:
        adapt_spaces(TextEnv())
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unsupported observation entry"):
        build_model(gym.spaces.MultiBinary(3), gym.spaces.Discrete(2), ModelConfig())


def test_box_actions_are_clipped_by_the_env_adapter() -> None:
    env = adapt_spaces(gym.make("Pendulum-v1"))
    assert isinstance(env, gym.wrappers.ClipAction)
    env.reset(seed=0)
    env.step(np.array([100.0], np.float32))  # far outside [-2, 2]: clipped, not an error
    assert not isinstance(adapt_spaces(gym.make("CartPole-v1")), (gym.wrappers.ClipAction,
                                                                    PackObservation))


def final_return(run_dir) -> float:
    import csv

    with (run_dir / "logs.csv").open(newline="") as f:
        return [float(r["mean_return"]) for r in csv.DictReader(f) if r["mean_return"]][-1]


@pytest.mark.parametrize("runtime", ["beast.mono", "beast.poly"])  # CLI module names
def test_a_dict_env_trains_with_a_torso_per_entry(tmp_path, runtime: str) -> None:
    """Random play earns 2.5 of 10; reading the Discrete entry earns up to 10."""
    from tests.conftest import run_cli

    result = run_cli(runtime, "--env", DICT_ENV, "--num-envs", "16", "--unroll-length", "10",
                     "--hidden-sizes", "32", "--total-steps", "25000", "--log-seconds", "1",
                     "--savedir", str(tmp_path), "--run-name", "run", timeout=200)
    assert result.returncode == 0, result.stderr[-2000:]
    assert final_return(tmp_path / "run") > 6.0


def test_discrete_observations_train_and_frozenlake_runs(tmp_path) -> None:
    from tests.conftest import run_cli

    result = run_cli("beast.mono", "--env", "tests.envs.dict_env:DiscreteObs-v0", "--num-envs",
                     "16", "--unroll-length", "10", "--hidden-sizes", "16", "--total-steps",
                     "40000", "--log-seconds", "1", "--savedir", str(tmp_path), "--run-name", "d")
    assert result.returncode == 0, result.stderr[-2000:]
    assert final_return(tmp_path / "d") > 8.0  # random: 5 of 10
    lake = run_cli("beast.mono", "--env", "FrozenLake-v1", "--num-envs", "8", "--total-steps",
                   "20000", "--log-seconds", "1", "--savedir", str(tmp_path), "--run-name", "f")
    assert lake.returncode == 0, lake.stderr[-2000:]
    assert (tmp_path / "f" / "checkpoint.pt").exists()
