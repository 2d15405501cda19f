"""Repository promises: the README's two commands come first and CI runs the test one."""

from __future__ import annotations

import re

from tests.conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_readme_starts_with_run_and_test_commands() -> None:
    run, test = readme_commands()[:2]
    assert "python -m beast.mono --env CartPole-v1" in run and "\n" not in run
    assert "pytest" in test and "\n" not in test
    for command in (run, test):
        assert command.index("pip install torch==2.13.0") < command.index("pip install -e")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test = readme_commands()[1]
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith("#")]
    assert ci_lines[-1] == test
