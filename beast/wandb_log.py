"""Optional Weights & Biases logging (--wandb; the [wandb] extra): the rows TensorBoard gets.

    sink = WandbSink(config, run_dir)       # wandb.init with the run's config, project, group, tags
    sink.write(metrics, env_steps)          # one call per log row, the row's env steps as step
    sink.close()

W&B's own settings apply: `WANDB_MODE=offline` keeps the run in RUN_DIR/wandb for a later
`wandb sync`. Nothing of it is imported unless --wandb is given.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from beast.config import Config


def check_wandb_installed() -> None:
    """ValueError (one line) when --wandb is given but the package is missing."""
    if importlib.util.find_spec("wandb") is None:
        raise ValueError("--wandb needs the wandb package, which is not installed; install it "
                         "with `pip install -e \".[wandb]\"`")


class WandbSink:
    """One W&B run per training session, named after the run directory."""

    def __init__(self, config: Config, run_dir: Path) -> None:
        import wandb

        self.run = wandb.init(project=config.run.wandb_project, group=config.run.wandb_group,
                              tags=list(config.run.wandb_tags), name=run_dir.name,
                              dir=str(run_dir), config=config.to_dict(), reinit=True)

    def write(self, metrics: dict[str, float], env_steps: int) -> None:
        self.run.log(dict(metrics), step=env_steps)

    def close(self) -> None:
        self.run.finish()
