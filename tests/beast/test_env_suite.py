"""The environment suite: Atari (ale-py), MinAtar, the envpool backend, and the id errors.

Every env here is real; the step counts are small (an Atari step is ~1 ms at frame skip 4).
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from beast.envs import make_env, make_vector_env
from beast.envs.__main__ import main as list_ids
from beast.envs.make import MissingExtraError, UnknownEnvError
from beast.envs.single import SingleEnvVector

ATARI_OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def _needs(module: str) -> None:
    pytest.importorskip(module)  # an extra that is not installed here; CI installs them all


def test_atari_spaces_and_frame_stack() -> None:
    """Pong: uint8 [4, 84, 84] channels first, oldest frame first, the same for K=1 and K=2."""
    _needs("ale_py")
    single = make_env("ALE/Pong-v5")
    assert single.observation_space == ATARI_OBS
    assert single.action_space == gym.spaces.Discrete(6)
    single.close()
    one = make_vector_env("ALE/Pong-v5", 1)
    assert isinstance(one, SingleEnvVector)
    assert one.observation_space == gym.spaces.Box(0, 255, (1, 4, 84, 84), np.uint8)
    one.close()

    env = make_vector_env("ALE/Pong-v5", 2)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.single_observation_space == ATARI_OBS
    assert env.observation_space == gym.spaces.Box(0, 255, (2, 4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.MultiDiscrete([6, 6])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[:, :3], obs[:, 1:])  # a reset pads with its own frame
    actions = np.random.default_rng(0).integers(0, 6, (40, 2))
    changed = 0
    for action in actions:
        previous = obs
        obs, reward, terminated, truncated, _ = env.step(action)
        assert obs.dtype == np.uint8 and reward.dtype == np.float64
        assert not (terminated.any() or truncated.any())  # Pong lasts far longer than 40 steps
        assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}  # raw game reward, unclipped
        np.testing.assert_array_equal(obs[:, :3], previous[:, 1:])  # the stack shifts by one
        changed += int((obs[:, 3] != previous[:, 3]).any())
    assert changed > 30  # new frames keep arriving
    env.close()


def test_atari_seeding_is_deterministic() -> None:
    _needs("ale_py")
    runs = []
    for _ in range(2):
        env = make_vector_env("ALE/Pong-v5", 2, sticky_actions=True)
        frames = [env.reset(seed=7)[0]]
        for action in np.random.default_rng(1).integers(0, 6, (20, 2)):
            frames.append(env.step(action)[0])
        runs.append(np.stack(frames))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_sticky_actions_set_repeat_action_probability() -> None:
    _needs("ale_py")
    for sticky, probability in ((False, 0.0), (True, 0.25)):
        env = make_vector_env("ALE/Pong-v5", 2, sticky_actions=sticky)
        for sub_env in env.envs:
            assert sub_env.unwrapped.ale.getFloat("repeat_action_probability") == probability
        env.close()


def test_episodic_life_continues_the_game() -> None:
    """Breakout, random actions: a lost life ends the learning episode, not the game."""
    _needs("ale_py")
    env = make_vector_env("ALE/Breakout-v5", 2, episodic_life=True)
    obs, info = env.reset(seed=0)
    assert not info["game_over"].any()
    ended = [None, None]  # per env: "life" or "game" if the previous step ended an episode
    at_end: list[dict] = [{}, {}]
    life_losses = game_ends = 0
    for action in np.random.default_rng(0).integers(0, 4, (1500, 2)):
        obs, reward, terminated, truncated, info = env.step(action)
        for i, sub_env in enumerate(env.envs):
            lives = sub_env.unwrapped.ale.lives()
            frame = info["episode_frame_number"][i]
            if ended[i] is not None:  # the placeholder step of next-step autoreset
                assert reward[i] == 0 and not terminated[i] and not truncated[i]
                assert not info["game_over"][i]
                if ended[i] == "life":  # same game, same frame, one life fewer
                    assert lives == at_end[i]["lives"] and frame == at_end[i]["frame"]
                    for k in range(4):
                        np.testing.assert_array_equal(obs[i, k], at_end[i]["obs"][-1])
                else:  # a new game: full lives, at most 30 no-op frames played
                    assert lives == 5 and frame <= 30
            ended[i] = None
            if terminated[i] or truncated[i]:
                game_over = bool(info["game_over"][i])
                assert game_over == (lives == 0)
                if not game_over:
                    assert 0 < lives < 5
                ended[i] = "game" if game_over else "life"
                at_end[i] = {"lives": lives, "frame": frame, "obs": obs[i].copy()}
                life_losses += int(not game_over)
                game_ends += int(game_over)
            else:
                assert not info["game_over"][i]
        if game_ends >= 2 and all(e is None for e in ended):
            break
    assert life_losses >= 8 and game_ends >= 2
    env.close()


def test_minatar_observations_are_channels_first() -> None:
    _needs("minatar")
    env = make_env("MinAtar/Breakout-v1")
    raw = gym.make("MinAtar/Breakout-v1")  # registered by make_env
    assert raw.observation_space.shape == (10, 10, 4)
    assert env.observation_space == gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    obs, _ = env.reset(seed=5)
    raw_obs, _ = raw.reset(seed=5)
    for action in [0, 1, 2, 1, 1, 2, 0, 2]:
        np.testing.assert_array_equal(obs, np.moveaxis(raw_obs, -1, 0).astype(np.uint8))
        assert obs.flags.c_contiguous
        obs = env.step(action)[0]
        raw_obs = raw.step(action)[0]
    assert isinstance(make_vector_env("MinAtar/Breakout-v1", 1), SingleEnvVector)


def test_minatar_vector_env_next_step_autoreset() -> None:
    _needs("minatar")
    env = make_vector_env("MinAtar/Breakout-v1", 2)
    assert env.observation_space == gym.spaces.Box(0, 1, (2, 4, 10, 10), np.uint8)
    obs, _ = env.reset(seed=0)
    previous_end = np.zeros(2, dtype=bool)
    ends = 0
    for action in np.random.default_rng(0).integers(0, 3, (300, 2)):
        obs, reward, terminated, truncated, _ = env.step(action)
        assert obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1}
        assert (reward[previous_end] == 0).all()
        assert not (terminated | truncated)[previous_end].any()
        previous_end = terminated | truncated
        ends += int(previous_end.sum())
    assert ends >= 4
    env.close()


def test_envpool_cartpole_next_step_autoreset() -> None:
    """After every end, the next step is a fresh start: reward 0, flags False, |state| <= 0.05."""
    _needs("envpool")
    env = make_vector_env("CartPole-v1", 4, backend="envpool")
    assert isinstance(env, gym.vector.VectorEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    reference = make_vector_env("CartPole-v1", 4)
    assert env.observation_space == reference.observation_space
    assert env.action_space == reference.action_space
    reference.close()
    obs, _ = env.reset(seed=3)
    previous_end = np.zeros(4, dtype=bool)
    ends = 0
    for action in np.random.default_rng(0).integers(0, 2, (300, 4)):
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs.dtype == np.float32 and obs.shape == (4, 4)
        assert reward.dtype == np.float64
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        assert (reward[previous_end] == 0).all() and (reward[~previous_end] == 1).all()
        assert not (terminated | truncated)[previous_end].any()
        assert (np.abs(obs[previous_end]) <= 0.05).all()  # CartPole's reset state
        assert (info["elapsed_step"][previous_end] == 0).all()
        previous_end = terminated | truncated
        ends += int(previous_end.sum())
    assert ends >= 20
    env.close()


def test_envpool_reset_seed_is_deterministic() -> None:
    """reset(seed=s) gives the same episodes whatever ran before; env i gets seed s + i."""
    _needs("envpool")
    env = make_vector_env("CartPole-v1", 2, backend="envpool")
    actions = np.random.default_rng(0).integers(0, 2, (50, 2))

    def play(seed: int) -> np.ndarray:
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(action)[0] for action in actions]
        return np.stack(frames)

    first = play(3)
    np.testing.assert_array_equal(play(3), first)
    assert not np.array_equal(play(4)[0], first[0])
    single = make_vector_env("CartPole-v1", 1, backend="envpool")
    np.testing.assert_array_equal(single.reset(seed=4)[0][0], first[0, 1])
    env.close()
    single.close()


def test_envpool_atari_matches_the_gymnasium_path() -> None:
    _needs("envpool")
    _needs("ale_py")
    pool = make_vector_env("ALE/Pong-v5", 2, backend="envpool", sticky_actions=True)
    gymnasium_env = make_vector_env("ALE/Pong-v5", 2)
    assert pool.single_observation_space == gymnasium_env.single_observation_space == ATARI_OBS
    assert pool.observation_space == gymnasium_env.observation_space
    assert pool.single_action_space == gymnasium_env.single_action_space
    assert pool.action_space == gymnasium_env.action_space
    gymnasium_env.close()
    config = pool.config
    assert config["task"] == "pong" and config["repeat_action_probability"] == 0.25
    assert not config["reward_clip"] and not config["episodic_life"]
    obs, _ = pool.reset(seed=0)
    for action in np.random.default_rng(0).integers(0, 6, (10, 2)):
        previous = obs
        obs = pool.step(action)[0]
        assert obs.dtype == np.uint8
        np.testing.assert_array_equal(obs[:, :3], previous[:, 1:])  # same stack order
    pool.close()


def test_envpool_episodic_life_reports_game_over() -> None:
    _needs("envpool")
    env = make_vector_env("ALE/Breakout-v5", 2, backend="envpool", episodic_life=True)
    _, info = env.reset(seed=0)
    assert not info["game_over"].any()
    previous_end = np.zeros(2, dtype=bool)
    lives_at_end = np.zeros(2, dtype=int)
    life_losses = game_ends = 0
    for action in np.random.default_rng(0).integers(0, 4, (700, 2)):
        _, reward, terminated, truncated, info = env.step(action)
        lives = info["lives"]
        ended_game = previous_end & (lives_at_end == 0)
        ended_life = previous_end & (lives_at_end > 0)
        assert (lives[ended_life] == lives_at_end[ended_life]).all()  # the game went on
        assert (lives[ended_game] == 5).all()
        assert (reward[previous_end] == 0).all() and not info["game_over"][previous_end].any()
        previous_end = terminated | truncated
        np.testing.assert_array_equal(info["game_over"], previous_end & (lives == 0))
        lives_at_end = np.where(previous_end, lives, 0)
        life_losses += int((previous_end & (lives > 0)).sum())
        game_ends += int(info["game_over"].sum())
    assert life_losses >= 8 and game_ends >= 2
    env.close()


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_ids_say_how_to_list_ids() -> None:
    with pytest.raises(UnknownEnvError) as error:
        make_vector_env("NoSuchEnv-v0", 2)
    assert "python -m beast.envs" in _one_line(error)
    with pytest.raises(UnknownEnvError) as error:
        make_vector_env("CartPol-v1", 2)
    assert "CartPole-v1" in _one_line(error)
    _needs("envpool")
    with pytest.raises(UnknownEnvError) as error:
        make_vector_env("ALE/Pongg-v5", 2, backend="envpool")
    message = _one_line(error)
    assert "Pong-v5" in message and "--backend envpool" in message


@pytest.mark.parametrize("env_id, backend, modules, command", [
    ("ALE/Pong-v5", "gymnasium", ["ale_py"], 'pip install -e ".[atari]"'),
    ("MinAtar/Breakout-v1", "gymnasium", ["minatar", "minatar.gym"],
     "pip install --no-deps minatar"),
    ("CartPole-v1", "envpool", ["envpool"], 'pip install -e ".[envpool]"'),
])
def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch, env_id: str,
                                            backend: str, modules: list[str],
                                            command: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    if env_id in gym.registry:  # as if the package had never registered it
        monkeypatch.delitem(gym.registry, env_id)
    with pytest.raises(MissingExtraError) as error:
        make_vector_env(env_id, 2, backend=backend)
    message = _one_line(error)
    assert command in message and modules[0] in message


def test_atari_flags_are_refused_elsewhere() -> None:
    with pytest.raises(ValueError, match="Atari ids only"):
        make_vector_env("CartPole-v1", 2, episodic_life=True)
    with pytest.raises(ValueError, match="Atari ids only"):
        make_env("CartPole-v1", sticky_actions=True)
    with pytest.raises(ValueError, match="backend"):
        make_vector_env("CartPole-v1", 2, backend="nope")


def test_listing_ids(capsys: pytest.CaptureFixture[str]) -> None:
    _needs("ale_py")
    _needs("minatar")
    list_ids(["breakout"])
    listed = capsys.readouterr().out.split()
    assert {"ALE/Breakout-v5", "MinAtar/Breakout-v1"} <= set(listed)
    assert "BreakoutNoFrameskip-v4" not in listed
    _needs("envpool")
    list_ids(["--backend", "envpool", "pong"])
    assert capsys.readouterr().out.split() == ["Pong-v5", "recipe:", "atari"]
