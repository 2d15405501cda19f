"""ZipfGridworld-v0: its laws against a reference written here, fixed maps, a scripted policy
that knows the target's cell solving every episode, and the observation layout."""

from __future__ import annotations

import collections
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import beast
from beast.envs.zipf_gridworld import ZipfGridworld, probabilities, rare_items

PRESETS = ("mini", "full")
DISTS = ("zipf", "uniform", "uniform_rare")
# The spec's action meaning, written out here: up, down, left, right, then the diagonals.
MOVES = {4: [(-1, 0), (1, 0), (0, -1), (0, 1)],
         8: [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]}
SPEC = {  # preset: (maps, objects, alpha, actions, steps, observation size)
    "mini": (5, 10, 1.5, 4, 12, 2 * 7 * 7 + 5 + 4 + 5),
    "full": (20, 20, 2.0, 8, 100, 11 * 7 * 7 + 5 + 4 + 20),
}


def reference_probabilities(n: int, alpha: float, dist: str) -> np.ndarray:
    """The obvious version: 1 / i**alpha for i = 1..n, zero outside the rare set if asked."""
    rare = set(range(n - max(1, n // 5), n))
    weights = []
    for index in range(n):
        if dist == "uniform_rare":
            weights.append(1.0 if index in rare else 0.0)
        else:
            weights.append(1.0 / (index + 1) ** (alpha if dist == "zipf" else 0.0))
    return np.array(weights) / sum(weights)


def draws(env: ZipfGridworld, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    infos = [env.reset(seed=seed)[1]] + [env.reset()[1] for _ in range(count - 1)]
    return (np.array([i["map"] for i in infos]), np.array([i["target"] for i in infos]), infos)


def shortest_path(walls: np.ndarray, blocked: set, start: tuple, goal: tuple,
                  moves: list) -> list[int]:
    """BFS over cells: the actions of a shortest path from start to goal avoiding walls and
    `blocked` cells."""
    parent = {start: None}
    queue = collections.deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for action, (dr, dc) in enumerate(moves):
            nxt = (cell[0] + dr, cell[1] + dc)
            if not walls[nxt] and nxt not in blocked and nxt not in parent:
                parent[nxt] = (cell, action)
                queue.append(nxt)
    assert goal in parent, f"{goal} unreachable from {start}"
    actions, cell = [], goal
    while parent[cell] is not None:
        cell, action = parent[cell]
        actions.append(action)
    return actions[::-1]


def path_to(env: ZipfGridworld, map_index: int, obj: int) -> list[int]:
    """Actions from the agent's cell to object `obj`, around every other object."""
    layout = env.layouts[map_index]
    cells = [tuple(int(v) for v in c) for c in layout.object_cells]
    blocked = set(cells) - {cells[obj]}
    return shortest_path(layout.walls, blocked, env.agent, cells[obj], MOVES[env.action_space.n])


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("n, alpha", [(1, 2.0), (3, 0.5), (5, 1.5), (10, 1.5), (20, 2.0)])
def test_probabilities_match_the_reference(n: int, alpha: float, dist: str) -> None:
    want = reference_probabilities(n, alpha, dist)
    np.testing.assert_allclose(probabilities(n, alpha, dist), want, rtol=1e-12, atol=0)


def test_rare_items_are_the_highest_fifth_and_at_least_one() -> None:
    assert rare_items(5).tolist() == [4]
    assert rare_items(4).tolist() == [3]
    assert rare_items(10).tolist() == [8, 9]
    assert rare_items(20).tolist() == [16, 17, 18, 19]


@pytest.mark.parametrize("preset", PRESETS)
def test_draw_frequencies_match_the_law(preset: str) -> None:
    """10 000 draws: each item's frequency within 5 binomial standard deviations of its
    probability (about 6e-7 of failing per item for a correct env), maps and targets alike,
    and the pair (0, 0) as often as independence says."""
    env = ZipfGridworld(preset=preset)
    n_maps, n_objects, alpha = SPEC[preset][:3]
    count = 10_000
    maps, targets, _ = draws(env, count, seed=1)
    for got, n in ((maps, n_maps), (targets, n_objects)):
        p = reference_probabilities(n, alpha, "zipf")
        freq = np.bincount(got, minlength=n) / count
        tolerance = 5 * np.sqrt(p * (1 - p) / count) + 1e-9
        assert np.all(np.abs(freq - p) <= tolerance), (freq, p)
    joint = reference_probabilities(n_maps, alpha, "zipf")[0] * \
        reference_probabilities(n_objects, alpha, "zipf")[0]
    both = np.mean((maps == 0) & (targets == 0))
    assert abs(both - joint) <= 5 * np.sqrt(joint * (1 - joint) / count)


@pytest.mark.parametrize("preset", PRESETS)
def test_uniform_rare_draws_exactly_the_rare_items(preset: str) -> None:
    env = ZipfGridworld(preset=preset, dist="uniform_rare")
    n_maps, n_objects = SPEC[preset][:2]
    maps, targets, infos = draws(env, 2000, seed=2)
    assert set(maps.tolist()) == set(range(n_maps - max(1, n_maps // 5), n_maps))
    assert set(targets.tolist()) == set(range(n_objects - max(1, n_objects // 5), n_objects))
    assert all(info["is_rare"] for info in infos)


@pytest.mark.parametrize("preset", PRESETS)
def test_is_rare_means_map_or_target_is_rare(preset: str) -> None:
    env = ZipfGridworld(preset=preset, dist="uniform")
    n_maps, n_objects = SPEC[preset][:2]
    maps, targets, infos = draws(env, 500, seed=3)
    want = (maps >= n_maps - max(1, n_maps // 5)) | (targets >= n_objects - max(1, n_objects // 5))
    assert [info["is_rare"] for info in infos] == want.tolist()
    assert 0 < want.sum() < len(want)  # both kinds of episode occurred
    _, _, _, _, info = env.step(0)
    assert set(info) == {"map", "target", "is_rare"} and isinstance(info["is_rare"], bool)


@pytest.mark.parametrize("preset", PRESETS)
def test_maps_are_fixed_across_instances_and_seeds(preset: str) -> None:
    first, second = ZipfGridworld(preset=preset), gym.make("ZipfGridworld-v0", preset=preset,
                                                           dist="uniform").unwrapped
    for a, b in zip(first.layouts, second.layouts, strict=True):
        np.testing.assert_array_equal(a.walls, b.walls)
        np.testing.assert_array_equal(a.object_cells, b.object_cells)
        np.testing.assert_array_equal(a.glyphs, b.glyphs)
        assert a.start == b.start
    assert len({tuple(layout.object_cells.ravel()) for layout in first.layouts}) == SPEC[preset][0]
    seen = {}
    for env, seeds in ((first, range(0, 150)), (second, range(5000, 5150))):
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            assert env.agent == env.layouts[info["map"]].start
            key = (info["map"], info["target"])
            if key in seen:
                np.testing.assert_array_equal(obs, seen[key])
            seen[key] = obs
    assert len(seen) > 10


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("preset", PRESETS)
def test_a_policy_that_knows_the_target_cell_always_scores(preset: str, dist: str) -> None:
    env = gym.make("ZipfGridworld-v0", preset=preset, dist=dist)
    returns = []
    for episode in range(200):
        _, info = env.reset(seed=episode)
        actions = path_to(env.unwrapped, info["map"], info["target"])
        assert len(actions) <= SPEC[preset][4]
        total = 0.0
        for step, action in enumerate(actions):
            _, reward, terminated, truncated, _ = env.step(action)
            total += reward
            assert terminated == (step == len(actions) - 1) and not truncated
        returns.append(total)
    assert np.mean(returns) == 1.0


@pytest.mark.parametrize("preset", PRESETS)
def test_touching_another_object_ends_the_episode_only_when_observed(preset: str) -> None:
    for observe in (True, False):
        env = ZipfGridworld(preset=preset, observe_objects=observe)
        env.reset(seed=0, options={"map": 1, "target": 0})
        actions = path_to(env, 1, 3)  # to object 3, around every other object
        for action in actions:
            _, reward, terminated, truncated, _ = env.step(action)
            assert reward == 0.0 and not truncated
        assert terminated == observe
        assert env.agent == env.target_cell(1, 3)


def test_walls_stop_the_agent_and_the_step_limit_truncates() -> None:
    """Mini, full view: keep moving up; the agent stops below the top wall (seen in its own
    plane of the observation) and the 12th step truncates."""
    env = ZipfGridworld(preset="mini", observe_objects=False)
    layout = env.layouts[0]
    start = layout.start
    target = next(k for k, (r, c) in enumerate(layout.object_cells) if c != start[1])
    env.reset(seed=0, options={"map": 0, "target": target})
    for step in range(1, 13):
        obs, reward, terminated, truncated, _ = env.step(0)
        assert env.agent == (max(1, start[0] - step), start[1])
        agent_plane = obs[49:98].reshape(7, 7)
        assert agent_plane.sum() == 1 and agent_plane[env.agent] == 1
        assert reward == 0 and not terminated and truncated == (step == 12)


@pytest.mark.parametrize("preset", PRESETS)
def test_observation_layout(preset: str) -> None:
    env = ZipfGridworld(preset=preset)
    obs, info = env.reset(seed=4)
    layout, n_maps = env.layouts[info["map"]], SPEC[preset][0]
    planes, cue = obs[:-(9 + n_maps)].reshape(-1, 7, 7), obs[-(9 + n_maps):]
    colour, shape = layout.glyphs[info["target"]]
    assert cue.tolist() == (np.eye(5)[colour].tolist() + np.eye(4)[shape].tolist()
                            + np.eye(n_maps)[info["map"]].tolist())
    if preset == "mini":  # the whole grid; no object planes
        assert planes.shape[0] == 2
        np.testing.assert_array_equal(planes[0], layout.walls)
        return
    assert planes.shape[0] == 11 and planes[1, 3, 3] == 1 and planes[1].sum() == 1
    row, col = layout.start
    for r in range(7):
        for c in range(7):
            cell = (row + r - 3, col + c - 3)
            inside = 0 <= cell[0] < 13 and 0 <= cell[1] < 13
            assert planes[0, r, c] == (layout.walls[cell] if inside else 1)
            here = [k for k, oc in enumerate(layout.object_cells) if tuple(oc) == cell]
            want = np.zeros(9)
            if here:
                want[[layout.glyphs[here[0]][0], 5 + layout.glyphs[here[0]][1]]] = 1
            np.testing.assert_array_equal(planes[2:, r, c], want)


@pytest.mark.parametrize("preset", PRESETS)
def test_passes_gymnasium_env_checker(preset: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make("ZipfGridworld-v0", preset=preset).unwrapped)
    assert not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize("preset", PRESETS)
def test_spaces_follow_the_preset_and_kwargs_override_it(preset: str) -> None:
    env = gym.make("ZipfGridworld-v0", preset=preset)
    _, _, _, actions, steps, size = SPEC[preset]
    assert env.observation_space.shape == (size,) and env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(actions)
    assert env.unwrapped.max_steps == steps
    custom = ZipfGridworld(preset=preset, alpha=0.0, max_steps=3)
    assert custom.max_steps == 3
    np.testing.assert_allclose(custom.map_probs, np.full(SPEC[preset][0], 1 / SPEC[preset][0]))


def test_import_beast_registers_the_id_without_torch_and_only_once() -> None:
    code = ("import sys, gymnasium as gym, beast; assert 'torch' not in sys.modules; "
            "env = gym.make('ZipfGridworld-v0', preset='full'); "
            "print(env.observation_space.shape[0], env.action_space.n)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(SPEC["full"][5]), str(SPEC["full"][3])]
    spec = gym.spec("ZipfGridworld-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        beast._register_envs()
    assert gym.spec("ZipfGridworld-v0") is spec
