"""`python -m beast.plot RUN_DIR`: a PNG of mean return and steps/s against env steps.

Works on any run directory (MonoBeast or PolyBeast): it reads only logs.csv.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def read_columns(csv_path: Path, names: tuple[str, ...]) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {name: [] for name in names}
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name in names:
                value = row.get(name) or "nan"
                columns[name].append(float(value))
    return columns


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write RUN_DIR/plot.png (or `output`) and return its path."""
    run_dir = Path(run_dir)
    csv_path = run_dir / "logs.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found: is {run_dir} a Beast run directory?")
    data = read_columns(csv_path, ("env_steps", "mean_return", "sps"))
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    points = [(s, r) for s, r in zip(data["env_steps"], data["mean_return"]) if not math.isnan(r)]
    top.plot([s for s, _ in points], [r for _, r in points])
    top.set_ylabel("mean return (last 100 episodes)")
    bottom.plot(data["env_steps"], data["sps"])
    bottom.set_ylabel("steps / s")
    bottom.set_xlabel("environment steps")
    top.set_title(run_dir.name)
    fig.tight_layout()
    path = Path(output) if output else run_dir / "plot.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="beast.plot", description=__doc__)
    parser.add_argument("run_dir", help="a run directory holding logs.csv")
    parser.add_argument("--output", help="PNG path (default: RUN_DIR/plot.png)")
    args = parser.parse_args(argv)
    try:
        print(plot_run(args.run_dir, args.output))
    except FileNotFoundError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
