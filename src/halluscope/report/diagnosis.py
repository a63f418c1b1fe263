"""The diagnosis section of report.html (and the page `halluscope diagnose` writes beside its JSON): each
analysis's plot, inline, with its plain reading, from a folder holding diagnosis.json and its PNGs."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..diagnose.readings import TITLES, reading
from ..diagnose.run import ANALYSES


def has_diagnosis(folder: str | Path) -> bool:
    return (Path(folder) / "diagnosis.json").is_file()


def diagnosis_only(folder: str | Path) -> bool:
    """A folder with diagnosis.json and no benchmark runs (no results files in it or one level down)."""
    folder = Path(folder)
    return has_diagnosis(folder) and not (any(folder.glob("*.results.json")) or any(folder.glob("*/*.results.json")))


def diagnosis_section(folder: str | Path) -> str:
    """<h2>Diagnosis</h2> and one block per analysis: title, reading, the PNG as a data URI."""
    folder = Path(folder)
    diagnosis = json.loads((folder / "diagnosis.json").read_text())
    parts = [f'<h2 id="diagnosis">Diagnosis: why does it hallucinate? ({html.escape(folder.name)})</h2>']
    for key in ANALYSES:
        if key not in diagnosis:
            continue
        parts.append(f"<h3>{html.escape(TITLES[key])}</h3><p>{html.escape(reading(key, diagnosis[key]))}</p>")
        png = folder / f"{key}.png"
        if png.is_file():
            uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
            parts.append(f'<img class="fig" alt="{key}" src="{uri}">')
    return "".join(parts)


def write_diagnosis_html(folder: str | Path, output: str | Path | None = None) -> Path:
    """A self-contained diagnosis.html of a diagnosis folder (default: inside it)."""
    from .html import CSS

    output = Path(output) if output is not None else Path(folder) / "diagnosis.html"
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>halluscope diagnosis</title>'
            f"<style>{CSS}</style></head><body>{diagnosis_section(folder)}</body></html>")
    output.write_text(page)
    return output


__all__ = ["diagnosis_only", "diagnosis_section", "has_diagnosis", "write_diagnosis_html"]
