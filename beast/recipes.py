"""Named recipes per env family: the settings a run starts from before its flags apply.

A recipe is a set of config values (model, optimiser and learning rate, T and B, reward
clipping, episodic life, sticky actions, the step budget). `--recipe auto` (the default)
picks one from the env id; `--recipe NAME` names one; `--recipe none` is Beast's bare
defaults. Flags always win over the recipe, and config.json records the recipe used.

    name = recipe_for("ALE/Pong-v5", "gymnasium")   # "atari"
    data = apply_recipe(Config().to_dict(), name)  # then the typed flags on top

Beast's bare defaults are tuned on CartPole, so `classic` adds nothing to them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    values: dict[tuple[str, str], Any]
    """{(config group, field): value}, e.g. {("optim", "learning_rate"): 6e-4}."""
    measured: str
    """What has been measured with it on this project's 2-core machine, or that nothing has."""


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("none", "Beast's bare defaults", {}, "see classic"),
    Recipe("classic", "classic control with discrete actions (CartPole, Acrobot, ...): Beast's "
           "defaults, tuned on CartPole: 64 envs x T32, 128-128 tanh towers, Adam lr 8e-3 eps "
           "1e-2, 1M steps", {},
           "CartPole-v1: how many seeds reach a mean-100 return >= 475 within the 1M-step "
           "budget, bench/mono_cartpole.py (c)"),
    Recipe("continuous", "continuous control (Pendulum, MuJoCo): a Gaussian policy, 16 envs x "
           "T16, 64-64 towers, Adam lr 1e-3 eps 1e-5, reward scale 0.1, discount 0.95, no "
           "entropy bonus, 3M steps",
           {("env", "num_envs"): 16, ("run", "unroll_length"): 16,
            ("model", "hidden_sizes"): (64, 64), ("optim", "learning_rate"): 1e-3,
            ("optim", "epsilon"): 1e-5, ("loss", "reward_scale"): 0.1,
            ("loss", "discount"): 0.95, ("loss", "entropy_cost"): 0.0,
            ("run", "total_steps"): 3_000_000},
           "Pendulum-v1: about -150 at 3M steps (bench/continuous.py, bench/loss_compare.py)"),
    Recipe("minatar", "MinAtar: the IMPALA ResNet torso (chosen for 10x10 frames), 32 envs x "
           "T20, 2M steps",
           {("env", "num_envs"): 32, ("run", "unroll_length"): 20,
            ("run", "total_steps"): 2_000_000},
           "MinAtar Breakout-v1: a mean return of about 82 at 2M steps (bench/loss_compare.py)"),
    Recipe("atari", "Atari (IMPALA's paper): the Nature CNN, RMSprop lr 6e-4 eps 0.01, 32 envs "
           "x T20, rewards clipped to [-1, 1], episodic life, sticky actions, 50M steps",
           {("env", "num_envs"): 32, ("run", "unroll_length"): 20,
            ("env", "episodic_life"): True, ("env", "sticky_actions"): True,
            ("loss", "reward_clip"): "abs_one", ("optim", "optimizer"): "rmsprop",
            ("optim", "learning_rate"): 6e-4, ("optim", "epsilon"): 0.01,
            ("run", "total_steps"): 50_000_000},
           "not measured here: 50M Atari steps do not fit this machine's sessions"),
    Recipe("procgen", "Procgen (envpool): the IMPALA ResNet, 64 envs x T32, Adam lr 5e-4 eps "
           "1e-5, discount 0.999, 25M steps (the Procgen paper's budget)",
           {("model", "torso"): "resnet", ("run", "unroll_length"): 32,
            ("optim", "learning_rate"): 5e-4, ("optim", "epsilon"): 1e-5,
            ("loss", "discount"): 0.999, ("run", "total_steps"): 25_000_000},
           "not measured here: 25M Procgen steps do not fit this machine's sessions"),
)}
RECIPE_NAMES = ("auto", *RECIPES)
PROCGEN_ID = re.compile(r"(Easy|Hard|Extreme|Memory|Exploration)-v\d+$")  # envpool's names


def recipe_for(env_id: str, backend: str = "gymnasium") -> str:
    """The recipe an env id gets by default. Makes one env for a plain Gymnasium id, to see
    whether its actions are continuous; an id that cannot be made gets `classic` (the run then
    fails on the env, with its own one-line reason)."""
    from beast.envs import atari, envpool, minatar
    from beast.envs.make import resolve_env_id

    if backend == "envpool":  # by name: resolving a Procgen id imports its Qt runtime
        if PROCGEN_ID.search(env_id):
            return "procgen"
        return "atari" if envpool.is_atari_task(env_id.removeprefix("ALE/")) else "classic"
    name = resolve_env_id(env_id, backend=backend)
    if atari.is_atari(name):
        return "atari"
    if name.startswith(minatar.MINATAR_PREFIX):
        return "minatar"
    import gymnasium as gym

    try:
        env = gym.make(name)
    except Exception:
        return "classic"
    continuous = isinstance(env.action_space, gym.spaces.Box)
    env.close()
    return "continuous" if continuous else "classic"


def apply_recipe(data: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """`data` (Config.to_dict() form) with the recipe's values set and its name recorded."""
    for (group, field), value in RECIPES[name].values.items():
        data[group][field] = list(value) if isinstance(value, tuple) else value
    data["run"]["recipe"] = name
    return data
