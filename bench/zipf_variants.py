"""ZipfGridworld ids with another alpha, for bench/memory_experiment.py's calibration.

Beast's command line has no env-kwargs flag, so the bench names a variant by id:
`--env zipf_variants:ZipfMini-a2.5-v0` imports this module (bench/ on PYTHONPATH, in the
actor processes too), which registers the mini preset at each alpha in ALPHAS.
"""

from __future__ import annotations

import gymnasium as gym

ALPHAS = (1.0, 1.5, 2.0, 2.5, 3.0)


def variant_id(alpha: float) -> str:
    return f"ZipfMini-a{alpha:.1f}-v0"


for _alpha in ALPHAS:
    if variant_id(_alpha) not in gym.registry:
        gym.register(variant_id(_alpha), entry_point="beast.envs.zipf_gridworld:ZipfGridworld",
                     kwargs={"preset": "mini", "alpha": _alpha})
