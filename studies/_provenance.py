"""What every study script records next to its results, so that a results file says by itself how it
was made: the command line, the git commit (and whether the tree had uncommitted changes), the
package versions, the CPU, the model's hash and the date.

    from _provenance import parse_kv, provenance, write_result
    path = write_result("methods_world", {"rows": rows}, model_hash=model_hash(adapter.name))

`write_result` writes studies/results/<study>/<YYYY-MM-DD>_<git sha>.json. The scripts import this
module as a sibling (`python studies/X.py` puts studies/ on sys.path), the same way they import
`_arms`; it imports nothing from halluscope, so it does not move when the library does.
"""

from __future__ import annotations

import ast
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

STUDIES = Path(__file__).resolve().parent
RESULTS = STUDIES / "results"
PACKAGES = ("halluscope", "torch", "transformers", "numpy", "accelerate")


def parse_kv(text: str | None, option: str) -> dict[str, Any]:
    """'alpha=1,beta=0.1,name=x' -> {'alpha': 1, 'beta': 0.1, 'name': 'x'}; values are Python
    literals where they parse as one, else strings. A part without '=' exits naming `option`."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if "=" not in part:
            raise SystemExit(f"{option}: {part!r} is not key=value (example: {option} steps=1000,batch_size=32)")
        key, value = (s.strip() for s in part.split("=", 1))
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], check=False, cwd=STUDIES, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None outside a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (None for a package that is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu() -> dict[str, Any]:
    """The CPU's model name, core count and, where torch is imported, its vector extension and thread
    count: on a CPU the host sets the speed, and this project's hosts differ by up to 2x."""
    name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"model": name or platform.processor() or platform.machine(), "cores": os.cpu_count(),
                            "machine": platform.machine()}
    torch = sys.modules.get("torch")  # only if the study imported it: provenance should not load torch itself
    if torch is not None:
        info |= {"torch_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}
    return info


def model_hash(path: str | Path) -> str | None:
    """sha256 (first 16 hex digits) over a model folder's safetensors files, names and bytes; None
    for something that is not a local folder (a hub id: its revision is what identifies it)."""
    folder = Path(path)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def provenance(argv: list[str] | None = None, model_hash: str | dict[str, str | None] | None = None) -> dict[str, Any]:
    """The block every results file carries: command line, git commit, versions, CPU, model hash, UTC date."""
    block: dict[str, Any] = {
        "command": [Path(sys.executable).name, *(sys.argv if argv is None else argv)],
        "git": git_state(),
        "versions": package_versions(),
        "cpu": cpu(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if model_hash is not None:
        block["model_hash"] = model_hash
    return block


def write_result(study: str, data: dict[str, Any], path: str | Path | None = None, argv: list[str] | None = None,
                 model_hash: str | dict[str, str | None] | None = None) -> Path:
    """Write {"provenance": ..., **data} to `path`, by default studies/results/<study>/<date>_<sha>.json
    (a second run on the same day and commit gets _2, _3, ...). Returns the path written."""
    block = provenance(argv, model_hash)
    text = json.dumps({"study": study, "provenance": block, **data}, indent=1, default=str) + "\n"
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path
    sha = (block["git"]["commit"] or "nogit")[:7]
    stem = f"{block['date_utc'][:10]}_{sha}"
    (RESULTS / study).mkdir(parents=True, exist_ok=True)
    path, n = RESULTS / study / f"{stem}.json", 2
    while True:  # claim the name atomically: two studies finishing at once must not write one file
        try:
            with path.open("x") as f:
                f.write(text)
            return path
        except FileExistsError:
            path, n = RESULTS / study / f"{stem}_{n}.json", n + 1
