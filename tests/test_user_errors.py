"""What a new user meets: each mistake is one line on stderr, exit code 2, and nothing left on
disk; a run that fails before its first learner step leaves no run directory behind."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import FAST, run_cli

DICT_ENVS = "tests.envs.dict_env"

# (case, runtime, flags, what the line must say)
CASES = [
    ("unsupported observation entry", "beast.mono", ["--env", f"{DICT_ENVS}:TextObs-v0"],
     "unsupported observation entry 'words'"),
    ("unsupported action space", "beast.mono", ["--env", f"{DICT_ENVS}:MultiBinaryAction-v0"],
     "unsupported action space"),
    ("env constructor raises", "beast.mono", ["--env", f"{DICT_ENVS}:BrokenConstructor-v0"],
     "this env cannot be built"),
    ("env constructor raises (poly)", "beast.poly",
     ["--env", f"{DICT_ENVS}:BrokenConstructor-v0"], "this env cannot be built"),
    ("abbreviated flag", "beast.mono", ["--lr", "0.1"], "unrecognized arguments: --lr"),
    ("infinite float flag", "beast.mono", ["--learning-rate", "inf"], "--learning-rate"),
    ("nan float flag", "beast.poly", ["--discount", "nan"], "--discount"),
    ("run name escapes the savedir", "beast.mono", ["--run-name", ".."], "plain folder name"),
    ("mono's slot rule", "beast.mono", ["--batch-size", "4"], "--slots-per-actor"),
    ("negative seed", "beast.mono", ["--seed", "-1"], "--seed"),
    ("unknown loss", "beast.mono", ["--loss", "ppo"], "--loss must be impala, impact or vmpo"),
    ("bad IMPACT clip", "beast.poly", ["--loss", "impact", "--impact-clip-epsilon", "0"],
     "--impact-clip-epsilon must be > 0"),
    ("bad V-MPO bound", "beast.mono", ["--loss", "vmpo", "--vmpo-epsilon-eta", "-0.01"],
     "--vmpo-epsilon-eta must be > 0"),
    ("bad flag of a loss not chosen", "beast.mono", ["--vmpo-target-period", "0"],
     "--vmpo-target-period must be >= 1"),
    ("old flag name", "beast.mono", ["--objective", "impala"],
     "unrecognized arguments: --objective"),
    ("cannot allocate the model", "beast.mono", ["--hidden-sizes", "100000", "100000"],
     "cannot make"),
    ("server address without a port", "beast.poly", ["--server-addresses", "notanaddress"],
     "is not HOST:PORT"),
    ("server port out of range", "beast.poly", ["--server-addresses", "127.0.0.1:99999"],
     "is not HOST:PORT"),
    ("unknown actors mode", "beast.poly", ["--actors", "near"],
     "--actors must be central or remote"),
    ("remote actors with the episodic memory", "beast.poly",
     ["--actors", "remote", "--use-lstm", "--episodic-memory"], "use --actors central"),
    ("remote actors on a bad address", "beast.poly", ["--actors", "remote", "--actor-address",
                                                      "127.0.0.1:99999"], "is not HOST:PORT"),
    ("remote actors on a public address without a token", "beast.poly",
     ["--actors", "remote", "--actor-address", "0.0.0.0:0"], "without an auth token"),
    ("Ray-placed remote actors that would also be started by hand", "beast.poly",
     ["--actors", "remote", "--ray-address", "127.0.0.1:1", "--no-start-actors"],
     "use one of them"),
    ("no server on the port", "beast.poly", ["--server-addresses", "127.0.0.1:1"],
     "cannot reach env server 127.0.0.1:1"),
]
if not __import__("torch").cuda.is_available():
    CASES.append(("no CUDA here", "beast.mono", ["--device", "cuda"], "CUDA is not available"))
if importlib.util.find_spec("Box2D") is None:
    CASES.append(("box2d missing", "beast.mono", ["--env", "LunarLander-v3"],
                  'pip install -e ".[box2d]"'))
if importlib.util.find_spec("mujoco") is None:
    CASES.append(("mujoco missing", "beast.mono", ["--env", "HalfCheetah-v5"],
                  'pip install -e ".[mujoco]"'))


@pytest.mark.parametrize("case,module,flags,says", CASES, ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_and_leaves_nothing(tmp_path: Path, case: str, module: str,
                                                     flags: list[str], says: str) -> None:
    savedir = tmp_path / "runs"
    result = run_cli(module, *FAST, *flags, "--savedir", str(savedir), timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    assert "Traceback" not in result.stderr
    assert not savedir.exists() or not any(savedir.iterdir())
    assert not (tmp_path / "config.json").exists()


def test_an_unwritable_savedir_is_one_line() -> None:
    result = run_cli("beast.mono", *FAST, "--savedir", "/proc/beast-runs", timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "/proc/beast-runs" in lines[0]


def test_poly_has_no_mono_slot_rule(tmp_path: Path) -> None:
    """PolyBeast has no rollout slots: a batch of 4 unrolls is fine there."""
    result = run_cli("beast.poly", *FAST, "--batch-size", "4", "--total-steps", "2000",
                     "--savedir", str(tmp_path), "--run-name", "r")
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_run_that_fails_before_its_first_learner_step_leaves_no_run_directory(
        tmp_path: Path) -> None:
    result = run_cli("beast.mono", *FAST, "--env", "tests.envs.counting_env:FaultyAtOnce-v0",
                     "--max-actor-restarts", "0", "--savedir", str(tmp_path), "--run-name", "r")
    assert result.returncode == 1
    assert "faulty env" in result.stderr
    assert not (tmp_path / "r").exists()
