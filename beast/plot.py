"""`python -m beast.plot RUN [RUN ...]`: mean return (and eval return) and steps/s of runs.

One run writes RUN/plot.png. Several runs are overlaid in one figure (default
./beast-plot.png). Runs whose configs differ only in their seed (and run name or savedir) form
one group, drawn as the mean over its runs with a band from the lowest to the highest run;
groups are labelled by the config fields that tell them apart. Periodic evaluations
(`eval/return_mean`, from --eval-every) are drawn dashed where a run has them.

    python -m beast.plot runs/cartpole-s0 runs/cartpole-s1 runs/cartpole-lr1e-3-s0 --x wall_time

It reads only logs.csv and config.json, so it works on any run directory (MonoBeast or
PolyBeast).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

X_AXES = {"env_steps": "environment steps", "wall_time": "wall time (s)"}
# Config fields that name or place a run rather than change what it learns.
IDENTITY_FIELDS = {("run", "seed"), ("run", "run_name"), ("run", "savedir")}


def read_columns(csv_path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    columns: dict[str, list[float]] = {name: [] for name in names}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name in names:
                columns[name].append(float(row.get(name) or "nan"))
    return {name: np.asarray(values) for name, values in columns.items()}


def run_config(run_dir: Path) -> dict[tuple[str, str], Any]:
    """A run's config as {(group, field): value}; empty if it has no config.json."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {(group, name): json.dumps(value) for group, fields in data.items()
            for name, value in fields.items()}


def group_runs(run_dirs: list[Path]) -> dict[str, list[Path]]:
    """Runs grouped by their config minus IDENTITY_FIELDS; each group labelled by the fields
    in which the groups differ (or by the run's name when there is a single group)."""
    configs = {d: {k: v for k, v in run_config(d).items() if k not in IDENTITY_FIELDS}
               for d in run_dirs}
    groups: dict[tuple, list[Path]] = {}
    for d in run_dirs:
        groups.setdefault(tuple(sorted(configs[d].items())), []).append(d)
    if len(groups) == 1:
        (members,) = groups.values()
        label = members[0].name if len(members) == 1 else f"{len(members)} seeds"
        return {label: members}
    keys = {k for d in run_dirs for k in configs[d]}
    differing = sorted(k for k in keys if len({configs[d].get(k) for d in run_dirs}) > 1)
    labelled: dict[str, list[Path]] = {}
    for members in groups.values():
        config = configs[members[0]]
        label = ", ".join(f"{field}={json.loads(config[(g, field)]) if (g, field) in config else '-'}"
                          for g, field in differing) or members[0].name
        if len(members) > 1:
            label += f" ({len(members)} seeds)"
        labelled[label] = members
    return labelled


def mean_band(curves: list[tuple[np.ndarray, np.ndarray]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max of curves (x, y) on a shared grid spanning the x range all cover."""
    curves = [(x, y) for x, y in curves if len(x)]
    start, stop = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    grid = np.linspace(start, stop, 200) if stop > start else np.array([start])
    values = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, values.mean(0), values.min(0), values.max(0)


def _curve(run_dir: Path, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    data = read_columns(run_dir / "logs.csv", (x_name, y_name))
    keep = ~np.isnan(data[x_name]) & ~np.isnan(data[y_name])
    return data[x_name][keep], data[y_name][keep]


def _draw(axes: Any, curves: list[tuple[np.ndarray, np.ndarray]], label: str, color: Any,
          style: str = "-") -> None:
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return
    if len(curves) == 1:
        axes.plot(*curves[0], style, color=color, label=label)
        return
    grid, mean, low, high = mean_band(curves)
    axes.plot(grid, mean, style, color=color, label=label)
    axes.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)


def plot_runs(run_dirs: list[str | Path], output: str | Path | None = None,
              x_axis: str = "env_steps") -> Path:
    """Write the figure for these runs and return its path (see the module docstring)."""
    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not (d / "logs.csv").is_file():
            raise FileNotFoundError(f"{d / 'logs.csv'} not found: is {d} a Beast run directory?")
    if x_axis not in X_AXES:
        raise ValueError(f"x axis must be one of {', '.join(X_AXES)} (got {x_axis!r})")
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, members) in enumerate(group_runs(dirs).items()):
        color = colors[i % len(colors)]
        _draw(top, [_curve(d, x_axis, "mean_return") for d in members], label, color)
        eval_x = "eval/env_steps" if x_axis == "env_steps" else x_axis  # when its weights were
        _draw(top, [_curve(d, eval_x, "eval/return_mean") for d in members], f"{label}: eval",
              color, "--")
        _draw(bottom, [_curve(d, x_axis, "sps") for d in members], label, color)
    top.set_ylabel("mean return (last 100 episodes)")
    bottom.set_ylabel("steps / s")
    bottom.set_xlabel(X_AXES[x_axis])
    top.set_title(dirs[0].name if len(dirs) == 1 else f"{len(dirs)} runs")
    if len(top.get_legend_handles_labels()[0]) > 1:
        top.legend(fontsize="small")
    fig.tight_layout()
    path = Path(output) if output else (dirs[0] / "plot.png" if len(dirs) == 1
                                        else Path("beast-plot.png"))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write RUN_DIR/plot.png (or `output`) for one run and return its path."""
    return plot_runs([run_dir], output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="beast.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN", help="run directories (logs.csv)")
    parser.add_argument("--output", help="PNG path (default: RUN/plot.png for one run, "
                                         "./beast-plot.png for several)")
    parser.add_argument("--x", choices=sorted(X_AXES), default="env_steps",
                        help="x axis (default: env_steps)")
    args = parser.parse_args(argv)
    try:
        print(plot_runs(args.run_dirs, args.output, args.x))
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
