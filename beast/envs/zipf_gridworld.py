"""ZipfGridworld-v0: a gridworld whose maps and targets follow a long-tailed (Zipf) law.

Why: a benchmark for Beast's optional episodic memory. Each episode draws a map and a target
object independently, item i of n (i = 1..n) with probability proportional to 1 / i**alpha, so
a few (map, target) pairs are common and most are rare. A parametric policy learns the common
pairs; recalling where a rare pair's target lies is what an episodic memory should add.
`dist="uniform"` (alpha = 0) and `dist="uniform_rare"` (uniform over the rarest floor(n / 5)
items, at least one, for maps and objects separately) give the matching evaluation sets.

Indices are 0-based: map m and object k are items m + 1 and k + 1 of the law above, so the
rarest items are the highest indices (`rare_items`). `info["is_rare"]` is True when the map
*or* the target is among the rarest floor(n / 5) items of its own index set (by index, the
same set whatever `dist` is in use).

Every map m has a fixed layout drawn from its own RNG, `np.random.default_rng(1000 + m)`:
doorways, one cell per object, the start cell and a distinct glyph (colour, shape) per object.
The layout is the same in every env instance and under every reset seed; it is redrawn only
until every object is reachable from the start, avoiding the other objects, within the
preset's step limit, so a policy that knows the target's cell always succeeds.

Reaching the target's cell gives reward 1 and terminates; with `observe_objects` touching any
other object terminates with reward 0 (without it, other objects are plain floor). The step
limit truncates. Moving into a wall (or off a diagonal into one) leaves the agent in place;
diagonal moves check only the destination cell, so they may cut corners.

Presets (kwargs `dist`, `alpha`, `observe_objects`, `max_steps` override them):
- "mini": 5 maps x 10 objects, alpha 1.5, one 5x5 room, a view of the whole 7x7 grid,
  4 actions (up, down, left, right), 12 steps. Objects are NOT drawn in the view: the agent
  sees walls, itself and the cue, and must recall each (map, target) pair's cell.
- "full": 20 maps x 20 objects, alpha 2, 3x3 rooms of 3x3 cells (a 13x13 grid: outer walls and
  one-cell walls between rooms, each shared wall with one doorway at a per-map position),
  a 7x7 egocentric view (off-grid cells read as wall), 8 actions (the 4 moves, then up-left,
  up-right, down-left, down-right), 100 steps. Objects are drawn in the view.

Observation: a flat float32 vector in [0, 1] (fits the MLP / LSTM torsos), in this order:
    planes [C, V, V] flattened, C-major: wall, agent, then (full only) one plane per colour
        (N_COLOURS) and one per shape (N_SHAPES), an object cell lighting its colour and shape;
    cue: target colour one-hot (N_COLOURS), target shape one-hot (N_SHAPES);
    map one-hot (n_maps): the spec is silent on telling maps apart, and mini's maps share
        their walls, so without it the map could not be known; it is the key a memory recalls by.
Sizes: mini 2*7*7 + 5 + 4 + 5 = 112, full 11*7*7 + 5 + 4 + 20 = 568.

Call loop:
    env = gym.make("ZipfGridworld-v0", preset="full")      # registered by `import beast`
    obs, info = env.reset(seed=0)                          # info: map, target, is_rare
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
    env.unwrapped.target_cell(info["map"], info["target"])  # for scripted policies
`reset(options={"map": m, "target": k})` picks the pair instead of drawing it.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

N_COLOURS, N_SHAPES = 5, 4
MOVES_4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
MOVES_8 = MOVES_4 + ((-1, -1), (-1, 1), (1, -1), (1, 1))
DISTS = ("zipf", "uniform", "uniform_rare")
_MAX_LAYOUT_TRIES = 1000


@dataclasses.dataclass(frozen=True)
class Preset:
    """The fixed geometry and default settings of one version of the task."""

    n_maps: int
    """How many maps the map law ranges over."""
    n_objects: int
    """Objects per map (and the range of the target law); at most N_COLOURS * N_SHAPES."""
    alpha: float
    """Zipf exponent of both laws."""
    rooms: int
    """Rooms per side of the square grid of rooms."""
    room_size: int
    """Cells per side of one room."""
    view: int | None
    """Side of the egocentric view; None: the whole grid, fixed (not egocentric)."""
    n_actions: int
    """4 (orthogonal moves) or 8 (and diagonal moves)."""
    max_steps: int
    """Steps before truncation (and the bound every layout's paths must fit in)."""
    objects_visible: bool
    """Whether object glyphs are drawn in the view."""

    def __post_init__(self) -> None:
        if self.n_objects > N_COLOURS * N_SHAPES:
            raise ValueError(f"{self.n_objects} objects need more than {N_COLOURS * N_SHAPES} "
                             "glyphs; objects of one map must look different")
        if self.n_actions not in (4, 8):
            raise ValueError(f"n_actions must be 4 or 8, not {self.n_actions}")

    @property
    def grid_size(self) -> int:
        return self.rooms * self.room_size + self.rooms + 1  # rooms, walls between, outer walls

    @property
    def moves(self) -> tuple[tuple[int, int], ...]:
        return MOVES_4 if self.n_actions == 4 else MOVES_8


PRESETS = {
    "mini": Preset(n_maps=5, n_objects=10, alpha=1.5, rooms=1, room_size=5, view=None,
                   n_actions=4, max_steps=12, objects_visible=False),
    "full": Preset(n_maps=20, n_objects=20, alpha=2.0, rooms=3, room_size=3, view=7,
                   n_actions=8, max_steps=100, objects_visible=True),
}


class Layout(NamedTuple):
    """One map: walls [H, W] bool, object_cells [n_objects, 2], start (row, col),
    glyphs [n_objects, 2] (colour, shape)."""

    walls: np.ndarray
    object_cells: np.ndarray
    start: tuple[int, int]
    glyphs: np.ndarray


def rare_items(n: int) -> np.ndarray:
    """The rarest floor(n / 5) indices (at least one): the highest ones."""
    return np.arange(n - max(1, n // 5), n)


def probabilities(n: int, alpha: float, dist: str = "zipf") -> np.ndarray:
    """P(index k) for k = 0..n-1: proportional to 1 / (k + 1)**alpha under "zipf", 1 / n under
    "uniform", uniform over `rare_items(n)` under "uniform_rare"."""
    if dist not in DISTS:
        raise ValueError(f"unknown dist {dist!r}; choose one of {', '.join(DISTS)}")
    weights = np.zeros(n)
    if dist == "uniform_rare":
        weights[rare_items(n)] = 1.0
    else:
        weights[:] = np.arange(1, n + 1, dtype=np.float64) ** -(alpha if dist == "zipf" else 0.0)
    return weights / weights.sum()


def distances(walls: np.ndarray, blocked: set[tuple[int, int]], start: tuple[int, int],
              moves: tuple[tuple[int, int], ...]) -> dict[tuple[int, int], int]:
    """BFS step counts from `start` to every cell reachable without entering walls or `blocked`
    (a blocked cell itself gets a distance when reached, but is not expanded)."""
    dist = {start: 0}
    queue = collections.deque([start])
    while queue:
        cell = queue.popleft()
        if cell in blocked and cell != start:
            continue
        for dr, dc in moves:
            nxt = (cell[0] + dr, cell[1] + dc)
            if not walls[nxt] and nxt not in dist:
                dist[nxt] = dist[cell] + 1
                queue.append(nxt)
    return dist


def _room_walls(preset: Preset, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Walls with the rooms carved out and one doorway per shared wall; and the room cells."""
    size, step = preset.grid_size, preset.room_size + 1
    walls = np.ones((size, size), dtype=bool)
    cells = []
    for a in range(preset.rooms):
        for b in range(preset.rooms):
            walls[1 + a * step:a * step + step, 1 + b * step:b * step + step] = False
            cells += [(1 + a * step + r, 1 + b * step + c)
                      for r in range(preset.room_size) for c in range(preset.room_size)]
    for a in range(preset.rooms):
        for b in range(preset.rooms - 1):
            walls[1 + a * step + rng.integers(preset.room_size), (b + 1) * step] = False
            walls[(b + 1) * step, 1 + a * step + rng.integers(preset.room_size)] = False
    return walls, cells


def _solvable(walls: np.ndarray, start: tuple[int, int], objects: list, preset: Preset) -> bool:
    """Every object reachable from start within max_steps, stepping on no other object (one
    BFS: objects are reached but not expanded, so each one's path crosses no other)."""
    reach = distances(walls, set(objects), start, preset.moves)
    return all(reach.get(cell, preset.max_steps + 1) <= preset.max_steps for cell in objects)


def build_layout(map_index: int, preset: Preset) -> Layout:
    """Map `map_index`'s layout, from `np.random.default_rng(1000 + map_index)` alone."""
    rng = np.random.default_rng(1000 + map_index)
    walls, cells = _room_walls(preset, rng)
    for _ in range(_MAX_LAYOUT_TRIES):
        picks = rng.choice(len(cells), size=preset.n_objects + 1, replace=False)
        start, objects = cells[picks[0]], [cells[i] for i in picks[1:]]
        if _solvable(walls, start, objects, preset):
            break
    else:
        raise RuntimeError(f"no solvable placement for map {map_index} "
                           f"in {_MAX_LAYOUT_TRIES} tries")
    codes = rng.permutation(N_COLOURS * N_SHAPES)[:preset.n_objects]
    glyphs = np.stack([codes // N_SHAPES, codes % N_SHAPES], axis=1)
    return Layout(walls, np.array(objects), start, glyphs)


def _base_planes(layout: Layout, preset: Preset) -> np.ndarray:
    """[C, H, W] planes of everything but the agent (its plane left empty), padded with wall
    by view // 2 on each side for the egocentric crop."""
    channels = 2 + (N_COLOURS + N_SHAPES if preset.objects_visible else 0)
    planes = np.zeros((channels,) + layout.walls.shape, dtype=np.float32)
    planes[0] = layout.walls
    if preset.objects_visible:
        rows, cols = layout.object_cells.T
        planes[2 + layout.glyphs[:, 0], rows, cols] = 1.0
        planes[2 + N_COLOURS + layout.glyphs[:, 1], rows, cols] = 1.0
    pad = (preset.view or 0) // 2
    padded = np.pad(planes, ((0, 0), (pad, pad), (pad, pad)))
    if pad:
        padded[0, :pad], padded[0, -pad:], padded[0, :, :pad], padded[0, :, -pad:] = 1, 1, 1, 1
    return padded


class ZipfGridworld(gym.Env):
    """The env; see the module docstring for the task, the presets and the observation."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, preset: str = "mini", dist: str = "zipf", alpha: float | None = None,
                 observe_objects: bool = True, max_steps: int | None = None) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.preset = PRESETS[preset]
        self.alpha = self.preset.alpha if alpha is None else float(alpha)
        self.max_steps = self.preset.max_steps if max_steps is None else int(max_steps)
        self.observe_objects = observe_objects
        self.dist = dist
        self.map_probs = probabilities(self.preset.n_maps, self.alpha, dist)
        self.target_probs = probabilities(self.preset.n_objects, self.alpha, dist)
        self.layouts = [build_layout(m, self.preset) for m in range(self.preset.n_maps)]
        self._planes = [_base_planes(layout, self.preset) for layout in self.layouts]
        self._view = self.preset.view or self.preset.grid_size
        cue_size = N_COLOURS + N_SHAPES + self.preset.n_maps
        size = self._planes[0].shape[0] * self._view ** 2 + cue_size
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
        self.action_space = gym.spaces.Discrete(self.preset.n_actions)
        self._map, self._target, self._t, self.agent = 0, 0, 0, self.layouts[0].start

    def target_cell(self, map_index: int, target: int) -> tuple[int, int]:
        """The (row, col) of object `target` on map `map_index`."""
        row, col = self.layouts[map_index].object_cells[target]
        return int(row), int(col)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        drawn_map = self.np_random.choice(self.preset.n_maps, p=self.map_probs)
        drawn_target = self.np_random.choice(self.preset.n_objects, p=self.target_probs)
        # both are always drawn, so picking a pair leaves the RNG stream as it would be
        self._map = int(options.get("map", drawn_map))
        self._target = int(options.get("target", drawn_target))
        self._t, self.agent = 0, self.layouts[self._map].start
        return self._observation(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        layout = self.layouts[self._map]
        dr, dc = self.preset.moves[int(action)]
        nxt = (self.agent[0] + dr, self.agent[1] + dc)
        if not layout.walls[nxt]:
            self.agent = nxt
        self._t += 1
        reward, terminated = 0.0, False
        if self.agent == self.target_cell(self._map, self._target):
            reward, terminated = 1.0, True
        elif self.observe_objects and (layout.object_cells == self.agent).all(axis=1).any():
            terminated = True
        truncated = not terminated and self._t >= self.max_steps
        return self._observation(), reward, terminated, truncated, self._info()

    def _observation(self) -> np.ndarray:
        planes = self._planes[self._map]
        if self.preset.view:  # padded by view // 2, so the crop starts at the agent's cell
            crop = planes[:, self.agent[0]:self.agent[0] + self._view,
                          self.agent[1]:self.agent[1] + self._view].copy()
            crop[1, self._view // 2, self._view // 2] = 1.0
        else:
            crop = planes.copy()
            crop[1][self.agent] = 1.0
        colour, shape = self.layouts[self._map].glyphs[self._target]
        cue = np.zeros(N_COLOURS + N_SHAPES + self.preset.n_maps, dtype=np.float32)
        cue[[colour, N_COLOURS + shape, N_COLOURS + N_SHAPES + self._map]] = 1.0
        return np.concatenate([crop.ravel(), cue])

    def _info(self) -> dict[str, Any]:
        is_rare = (self._map in rare_items(self.preset.n_maps)
                   or self._target in rare_items(self.preset.n_objects))
        return {"map": self._map, "target": self._target, "is_rare": bool(is_rare)}
