"""--wandb logs the rows TensorBoard gets, plus the config, to Weights & Biases. Checked in
offline mode by reading the run's record file back (a LevelDB-style log of protobuf records,
read here with a small reader of our own)."""

from __future__ import annotations

import csv
import json
import os
import struct
from pathlib import Path

import subprocess
import sys

import pytest

from tests.conftest import FAST, REPO, beast_env

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """The protobuf Records of a .wandb file: a 7-byte ':W&B' header, then 32 KiB blocks of
    chunks [crc32 (4) | length (2, little-endian) | type (1) | data]."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, offset = [], b"", 7
    while offset + 7 <= len(data):
        room = BLOCK - offset % BLOCK
        if room < 7:  # a block's tail too short for a header is padding
            offset += room
            continue
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind == 0 and length == 0:  # zero padding at the end of a block
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_wandb_offline_run_holds_the_rows_and_the_config(tmp_path: Path) -> None:
    env = {**beast_env(), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "beast.mono", "--env", "CartPole-v1", *FAST[:4],
         "--hidden-sizes", "16", "--num-actors", "0", "--total-steps", "6000",
         "--log-steps", "2048", "--wandb", "--wandb-project", "proj", "--wandb-group", "grp",
         "--wandb-tags", "t1", "t2", "--savedir", str(tmp_path), "--run-name", "w"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record_file,) = (tmp_path / "w" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(record_file)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs and runs[0].project == "proj" and runs[0].run_group == "grp"
    assert list(runs[0].tags) == ["t1", "t2"] and runs[0].display_name == "w"
    updates = [*runs[0].config.update, *(u for r in records
                                         if r.WhichOneof("record_type") == "config"
                                         for u in r.config.update)]
    config = {u.key: json.loads(u.value_json) for u in updates}
    assert config["optim"]["learning_rate"] == 8e-3 and config["run"]["wandb_group"] == "grp"
    history = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                     for item in r.history.item}
            history.append({**items, "_step": items.get("_step", r.history.step.num)})
    with (tmp_path / "w" / "logs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(history) == len(rows) >= 3
    for logged, row in zip(history, rows):
        assert logged["_step"] == int(float(row["env_steps"]))
        for key in ("mean_return", "loss/total", "grad_norm", "env_steps"):
            assert logged[key] == pytest.approx(float(row[key]), rel=1e-12), key


def test_wandb_without_the_package_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"  # a sitecustomize that hides wandb from imports
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    env = beast_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    result = subprocess.run([sys.executable, "-m", "beast.mono", "--wandb", "--savedir",
                             str(tmp_path / "runs")], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "pip install -e \".[wandb]\"" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_wandb_that_cannot_start_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"  # no API key anywhere, online mode: W&B refuses at once
    home.mkdir()
    env = {**beast_env(), "HOME": str(home), "WANDB_MODE": "online", "WANDB_DIR": str(home)}
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run([sys.executable, "-m", "beast.mono", *FAST, "--num-actors", "0",
                             "--wandb", "--savedir", str(tmp_path / "runs")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "--wandb: W&B did not start" in result.stderr
    assert not any((tmp_path / "runs").iterdir())
