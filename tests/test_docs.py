"""The API reference builds from the docstrings with warnings as errors, offline.

`mkdocs build --strict` fails on any warning: an object a page names that griffe cannot
find, a docstring section griffe cannot parse, a cross-reference (e.g. in the public-names
table docs/hooks.py generates from beast.__all__) with no target. So a broken reference
fails here, and CI runs this file.
"""

from __future__ import annotations

import html
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import beast
from beast.learner import Learner
from tests.conftest import REPO


def text(page: Path) -> str:
    """A built page's visible text, whitespace collapsed."""
    body = re.sub(r"<[^>]+>", " ", page.read_text())
    return " ".join(html.unescape(body).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                            str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-4000:]
    return out


def test_every_nav_page_is_built(site: Path) -> None:
    pages = sorted(p.stem for p in (REPO / "docs" / "api").glob("*.md"))
    assert len(pages) >= 13
    for name in pages:
        assert (site / "api" / name / "index.html").is_file(), name


def test_learner_page_carries_the_step_docstring(site: Path) -> None:
    page = text(site / "api" / "learner" / "index.html")
    doc = inspect.getdoc(Learner.step)
    assert doc is not None
    first_paragraph = " ".join(doc.split("\n\n")[0].split())
    assert first_paragraph in page
    assert "policy_version [T+1, B] int64" in page  # a row of the batch contract's table


def test_every_public_name_links_to_its_documentation(site: Path) -> None:
    built = (site / "api" / "beast" / "index.html").read_text()
    for name in beast.__all__:
        module = beast._PUBLIC[name]
        anchor = f"#{module}.{name}"
        assert re.search(rf'href="[^"]*{re.escape(anchor)}"', built), name


def test_mapped_folders_are_documented_under_their_import_path(site: Path) -> None:
    page = (site / "api" / "remote_env" / "index.html").read_text()
    assert 'id="beast.poly.remote_env.RemoteVectorEnv"' in page
    assert "however its envs are split across servers" in text(
        site / "api" / "remote_env" / "index.html")
