"""Griffe extension for the API reference: `mono/` and `poly/` are `beast.mono` and `beast.poly`.

The wheel maps those top-level folders into the package (pyproject's `wheel.packages`), which
an import sees but griffe's static finder, walking `beast/`, does not. When griffe has loaded
`beast`, this loads each folder as a package of its own and attaches it under `beast`, so its
objects get their import paths (`beast.poly.remote_env.RemoteVectorEnv`) and cross-references
to and from the rest of the package resolve. mkdocs.yml names this file under the handler's
`extensions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

REPO = Path(__file__).resolve().parent.parent
MAPPED = {"mono": REPO / "mono", "poly": REPO / "poly"}  # as pyproject's wheel.packages


class MappedFolders(griffe.Extension):
    """Attach the mapped folders under `beast` once `beast` is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "beast":
            return
        for name, folder in MAPPED.items():
            if name in pkg.members:
                continue
            sub = griffe.GriffeLoader(search_paths=[folder.parent],
                                      docstring_parser=loader.docstring_parser,
                                      docstring_options=loader.docstring_options,
                                      lines_collection=loader.lines_collection)
            module = sub.load(name)
            pkg.set_member(name, module)  # its path, and its members', become beast.<name>.*
