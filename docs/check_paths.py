"""Check that every file the README and docs/ cite exists: relative Markdown links (and their #anchors, for
Markdown targets), and repository paths written in backticks (`studies/results/.../x.json`,
`docs/x.md`, `studies/x.py`, `tests/x.py`, `src/...`). Paths with a placeholder (`<study>`) and files
cited from git history (`git show COMMIT:path`) are skipped.

    python docs/check_paths.py        # prints each missing path; exit 1 if there is one
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:studies|docs|tests|src|\.ci)/[^`\s]*)`")
HEADING = re.compile(r"^#+\s+(.*)$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings inside code blocks
    return {slug(h) for h in HEADING.findall(text)}


def problems(page: Path) -> list[str]:
    text = page.read_text()
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            found.append(f"link {target}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            found.append(f"anchor {target}")
    for path in CODE_PATH.findall(text):
        if "<" in path or "*" in path or "..." in path:
            continue
        if not (ROOT / path.rstrip("/")).exists():
            found.append(f"path {path}")
    return found


def main() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    missing = [f"{page.relative_to(ROOT)}: {p}" for page in pages for p in problems(page)]
    print("\n".join(missing) or f"all cited paths exist ({len(pages)} pages)")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
