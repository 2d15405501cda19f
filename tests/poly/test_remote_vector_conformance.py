"""RemoteVectorEnv as a drop-in SyncVectorEnv (issue 17), each check run on both side by side.

Every test takes `kind` ("sync" or "remote") and builds its vector env through `Envs.make`, so
the same assertions hold a local SyncVectorEnv and a RemoteVectorEnv over real env servers on
127.0.0.1 (in this process: `beast.poly.env_server.serve`). Where the two are compared with a
reference, the reference is a fresh SyncVectorEnv. A few checks are remote-only: what a Sync
env does not do (ClosedEnvironmentError after close) or cannot be asked (a value the wire
cannot carry); the README's DETACH section lists those differences.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import tests.envs.counting_env  # noqa: F401  (registers the test envs)
from beast.config import EnvConfig
from beast.poly.env_server import VectorEnvSession, serve
from beast.poly.remote_env import RemoteVectorEnv

KINDS = ("sync", "remote")
PAINTING = "tests.envs.counting_env:Painting-v0"
DICT_COUNTING = "tests.envs.counting_env:DictCounting-v0"


class Envs:
    """Builds vector envs of either kind; closes them and their servers at the end."""

    def __init__(self) -> None:
        self.opened: list[gym.vector.VectorEnv] = []
        self.servers: list[Any] = []

    def sync(self, env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
        env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs)] * num_envs)
        self.opened.append(env)
        return env

    def make(self, kind: str, env_id: str, split: tuple[int, ...] = (2, 2), **kwargs: Any
             ) -> gym.vector.VectorEnv:
        """`sum(split)` envs; a remote one has one server per entry, hosting that many."""
        if kind == "sync":
            return self.sync(env_id, sum(split), **kwargs)
        servers = [serve(EnvConfig(env=env_id, num_envs=k), env_kwargs=kwargs) for k in split]
        self.servers.extend(servers)
        env = RemoteVectorEnv([s.address for s in servers], env_id=env_id, timeout=10.0,
                              env_kwargs=kwargs)
        self.opened.append(env)
        return env

    def close(self) -> None:
        for env in self.opened:
            env.close()
        for server in self.servers:
            server.close()


@pytest.fixture
def envs():
    made = Envs()
    yield made
    made.close()


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


def assert_same(got: Any, want: Any, what: str = "value") -> None:
    """Equal values of equal dtypes, through tuples and dicts (an info, a Tuple observation)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{what}: {got} != {want}"
        for key in want:
            assert_same(got[key], want[key], f"{what}[{key!r}]")
    elif isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{what}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{what}[{i}]")
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{what}: {type(got)} is not an array"
        np.testing.assert_array_equal(got, want, err_msg=what)
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    else:
        assert got == want and type(got) is type(want), f"{what}: {got!r} != {want!r}"


def step_both(env: gym.vector.VectorEnv, ref: gym.vector.VectorEnv, steps: int,
              seed: int = 0) -> int:
    """Step both with the same random actions, asserting identical results; episodes ended."""
    rng = np.random.default_rng(seed)
    ended = 0
    for t in range(steps):
        actions = np.stack([ref.single_action_space.sample() for _ in range(ref.num_envs)])
        if isinstance(ref.single_action_space, gym.spaces.Discrete):
            actions = rng.integers(0, ref.single_action_space.n, ref.num_envs)
        got, want = env.step(actions), ref.step(actions)
        for name, g, w in zip(("obs", "reward", "terminated", "truncated", "info"), got, want):
            assert_same(g, w, f"step {t} {name}")
        ended += int(np.sum(want[2] | want[3]))
    return ended


# --- 6. trajectories independent of the split across servers -------------------------------


@pytest.mark.parametrize("split", [(4,), (1, 3), (2, 2), (1, 1, 2)])
def test_cartpole_matches_sync_in_every_split(envs: Envs, kind: str, split: tuple) -> None:
    env, ref = envs.make(kind, "CartPole-v1", split), envs.sync("CartPole-v1", 4)
    assert_same(env.reset(seed=0), ref.reset(seed=0))
    assert step_both(env, ref, 80) >= 4  # random CartPole episodes end: autoresets covered


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "MountainCarContinuous-v0",
                                    "Blackjack-v1"])
def test_spaces_match_sync(envs: Envs, kind: str, env_id: str) -> None:
    env, ref = envs.make(kind, env_id, (1, 2)), envs.sync(env_id, 3)
    assert env.single_observation_space == ref.single_observation_space
    assert env.single_action_space == ref.single_action_space  # bounds included
    assert env.observation_space == ref.observation_space
    assert env.action_space == ref.action_space


def test_env_servers_seed_every_env_as_sync_not_through_a_native_vector_env() -> None:
    """CartPole's native CartPoleVectorEnv draws all K starts from one RNG: servers avoid it."""
    session = VectorEnvSession(EnvConfig(env="CartPole-v1", num_envs=3))
    try:
        assert isinstance(session.env, gym.vector.SyncVectorEnv)
    finally:
        session.close()


# --- 7. seed lists and options -----------------------------------------------------------------


def test_seed_lists_seed_each_env_as_sync(envs: Envs, kind: str) -> None:
    env, ref = envs.make(kind, "CartPole-v1", (1, 3)), envs.sync("CartPole-v1", 4)
    assert_same(env.reset(seed=[9, 3, 7, 1]), ref.reset(seed=[9, 3, 7, 1]))
    obs, _ = env.reset(seed=[5, None, 7, 8])
    want, _ = ref.reset(seed=[5, None, 7, 8])
    np.testing.assert_array_equal(obs[[0, 2, 3]], want[[0, 2, 3]])  # env 1: unseeded
    with pytest.raises(ValueError, match="length must match num_envs=4"):
        env.reset(seed=[1, 2, 3])


@pytest.mark.parametrize("env_id, options", [
    ("CartPole-v1", {"low": -0.001, "high": 0.001}),
    ("Pendulum-v1", {"x_init": 0.5, "y_init": 0.25}),
])
def test_reset_options_reach_every_env(envs: Envs, kind: str, env_id: str, options: dict) -> None:
    env, ref = envs.make(kind, env_id, (1, 2)), envs.sync(env_id, 3)
    obs, info = env.reset(seed=4, options=options)
    assert_same((obs, info), ref.reset(seed=4, options=options))
    default, _ = envs.sync(env_id, 3).reset(seed=4)
    assert not np.array_equal(obs, default)  # the options changed the starts
    step_both(env, ref, 5)


def test_reset_mask_resets_only_the_masked_envs(envs: Envs, kind: str) -> None:
    env, ref = envs.make(kind, "CartPole-v1", (1, 1, 2)), envs.sync("CartPole-v1", 4)
    assert_same(env.reset(seed=0), ref.reset(seed=0))
    step_both(env, ref, 3)
    mask = np.array([False, True, False, True])
    assert_same(env.reset(seed=10, options={"reset_mask": mask.copy()}),
                ref.reset(seed=10, options={"reset_mask": mask.copy()}))
    step_both(env, ref, 3)


def test_an_option_the_wire_cannot_carry_is_refused_not_dropped(envs: Envs) -> None:
    env = envs.make("remote", "CartPole-v1")
    with pytest.raises(TypeError, match="reset option 'low' is a dict"):
        env.reset(seed=0, options={"low": {"x": 1}})


# --- 8. actions --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 5])
def test_a_wrong_number_of_actions_is_a_value_error(envs: Envs, kind: str, count: int) -> None:
    env = envs.make(kind, "CartPole-v1", (2, 2))
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(np.zeros(count, np.int64))


def test_a_scalar_action_is_a_type_error(envs: Envs, kind: str) -> None:
    env = envs.make(kind, "CartPole-v1", (2, 2))
    env.reset(seed=0)
    with pytest.raises(TypeError):
        env.step(0)


@pytest.mark.parametrize("env_id, bad, error", [("CartPole-v1", 2, AssertionError),
                                                ("Acrobot-v1", 3, IndexError)])
def test_an_out_of_range_action_raises_the_envs_own_error(envs: Envs, kind: str, env_id: str,
                                                         bad: int, error: type) -> None:
    env = envs.make(kind, env_id, (2, 2))
    env.reset(seed=0)
    with pytest.raises(error) as raised:
        env.step(np.array([0, 0, bad, 0]))
    assert type(raised.value) is error


def test_a_wrong_shape_names_the_whole_shape_not_one_servers_share(envs: Envs) -> None:
    env = envs.make("remote", "Pendulum-v1", (1, 3))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(4, 1\) \(4 envs\); got shape \(5, 1\)"):
        env.step(np.zeros((5, 1), np.float32))


# --- 9. the rest of the VectorEnv API ------------------------------------------------------------


def test_use_after_close_is_a_closed_environment_error(envs: Envs) -> None:
    """SyncVectorEnv does not check (its envs may still step); a remote env has no connection."""
    env = envs.make("remote", "CartPole-v1")
    env.reset(seed=0)
    env.close()
    env.close()  # idempotent
    for use in (lambda: env.reset(seed=0), lambda: env.step(np.zeros(4, np.int64)),
                lambda: env.get_attr("gravity"), env.render):
        with pytest.raises(gym.error.ClosedEnvironmentError):
            use()


def test_metadata_is_each_instances_own_with_render_modes_and_fps(envs: Envs, kind: str) -> None:
    one, two = envs.make(kind, "CartPole-v1"), envs.make(kind, "CartPole-v1")
    assert one.metadata == envs.sync("CartPole-v1", 1).metadata
    assert one.metadata["render_modes"] == ["human", "rgb_array"]
    assert one.metadata["render_fps"] == 50
    one.metadata["mine"] = True
    assert "mine" not in two.metadata and "mine" not in type(two).metadata


def test_spec_is_the_envs_spec(envs: Envs) -> None:
    """SyncVectorEnv built from env fns has no spec; RemoteVectorEnv has the single env's."""
    env = envs.make("remote", "Pendulum-v1", (1, 1), g=3.0)
    assert env.spec is not None and env.spec.id == "Pendulum-v1"
    assert env.spec.kwargs == {"g": 3.0} and env.spec.max_episode_steps == 200


def test_env_kwargs_reach_the_envs(envs: Envs, kind: str) -> None:
    env, ref = envs.make(kind, "Pendulum-v1", (1, 2), g=3.0), envs.sync("Pendulum-v1", 3, g=3.0)
    assert env.get_attr("g") == (3.0, 3.0, 3.0)
    assert_same(env.reset(seed=1), ref.reset(seed=1))
    step_both(env, ref, 10)


def test_numeric_infos_match_sync(envs: Envs, kind: str) -> None:
    """Taxi's infos: prob (float) and action_mask (int8 [6]), each with its '_' mask."""
    env, ref = envs.make(kind, "Taxi-v4", (1, 2)), envs.sync("Taxi-v4", 3)
    obs, info = env.reset(seed=2)
    assert_same((obs, info), ref.reset(seed=2))
    assert info["action_mask"].shape == (3, 6) and info["_prob"].all()
    step_both(env, ref, 20)


def test_get_attr_set_attr_and_call_match_sync(envs: Envs, kind: str) -> None:
    env = envs.make(kind, "CartPole-v1", (1, 3))
    assert env.get_attr("gravity") == (9.8,) * 4
    env.set_attr("gravity", [1.0, 2.0, 3.0, 4.0])
    assert env.get_attr("gravity") == (1.0, 2.0, 3.0, 4.0)
    env.set_attr("tau", 0.5)
    assert env.call("get_wrapper_attr", "tau") == (0.5,) * 4
    assert env.get_attr("render_mode") == (None,) * 4
    assert_same(env.get_attr("x_threshold"), (2.4,) * 4)
    with pytest.raises(ValueError, match="length equal to the number of environments"):
        env.set_attr("tau", [0.1, 0.2])
    with pytest.raises(AttributeError):
        env.get_attr("no_such_attribute")


def test_values_the_wire_cannot_carry_are_a_type_error(envs: Envs) -> None:
    env = envs.make("remote", "CartPole-v1")
    with pytest.raises(TypeError, match="'np_random'.*Generator"):
        env.get_attr("np_random")
    with pytest.raises(TypeError, match="set_attr"):
        env.set_attr("gravity", object())
    with pytest.raises(TypeError, match="argument of call"):
        env.call("get_wrapper_attr", ["tau"])
    assert env.get_attr("tau") == (0.02,) * 4  # the connection is still usable


def test_render_rgb_array_frames_match_sync(envs: Envs, kind: str) -> None:
    env = envs.make(kind, PAINTING, (1, 2), render_mode="rgb_array")
    ref = envs.sync(PAINTING, 3, render_mode="rgb_array")
    assert env.render_mode == ref.render_mode == "rgb_array"
    assert env.metadata["render_fps"] == 4
    assert_same(env.reset(seed=0), ref.reset(seed=0))
    step_both(env, ref, 3)
    frames = env.render()
    assert_same(frames, ref.render())
    assert len(frames) == 3 and frames[0].shape == (3, 4, 3) and frames[0][0, 0, 0] == 3


def test_render_without_a_render_mode_gives_no_frames(envs: Envs, kind: str) -> None:
    env = envs.make(kind, PAINTING, (1, 1))
    env.reset(seed=0)
    assert env.render_mode is None and env.render() == (None, None)


# --- Tuple, Dict and Discrete observations -----------------------------------------------------


@pytest.mark.parametrize("env_id, min_ended", [("Blackjack-v1", 1), (DICT_COUNTING, 3),
                                               ("Taxi-v4", 0)])
def test_structured_observations_match_sync(envs: Envs, kind: str, env_id: str,
                                            min_ended: int) -> None:
    """Tuple (Blackjack), Dict and Discrete (Taxi) observations travel packed, come back whole."""
    env, ref = envs.make(kind, env_id, (1, 2)), envs.sync(env_id, 3)
    assert env.single_observation_space == ref.single_observation_space
    assert env.observation_space == ref.observation_space
    assert_same(env.reset(seed=3), ref.reset(seed=3))
    assert step_both(env, ref, 12) >= min_ended
