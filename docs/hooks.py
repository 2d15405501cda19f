"""MkDocs hook: the public-names table of docs/api/beast.md, generated from `beast.__all__`.

The page holds the marker below; each name is written as a cross-reference to where its
module documents it, so a public name that no API page renders breaks `mkdocs build --strict`
instead of leaving the table out of date.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- beast.__all__ -->"


def public_names_table() -> str:
    import beast

    rows = [f"| [`{name}`][{module}.{name}] | `{module}` |"
            for name, module in sorted(beast._PUBLIC.items())]
    return "\n".join(["| name | documented in |", "|---|---|", *rows])


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return markdown.replace(MARKER, public_names_table()) if MARKER in markdown else markdown
