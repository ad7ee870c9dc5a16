"""What an analysis writes under its output folder: ``results.json`` (strict JSON, rewritten
atomically after every input so a crash or a kill keeps what was done), the resolved
``config.yaml``, ``report.html``, per-face files filed by track, and ``errors.log``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mrigan.app.analysis.results import AnalysisResults, strict_json
from mrigan.app.report import render_report
from mrigan.config import save_config
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_text

#: what an analysis writes at the top of its folder (besides one folder per input)
RUN_FILES = ("results.json", "report.html", "config.yaml", "errors.log", "INCOMPLETE.json")


class EarlierRunError(MriganError, FileExistsError):
    """An output folder that already holds an analysis."""


def check_earlier_run(out: Path, *, replace: bool) -> None:
    """Refuse an output folder holding an earlier analysis (its case folders would sit beside
    the new results); with ``replace``, remove the earlier run's own files first: the files in
    ``RUN_FILES`` and the input folders its results.json lists, nothing else."""
    results = out / "results.json"
    if not results.is_file():
        return
    try:
        earlier = json.loads(results.read_text(encoding="utf-8"))
        dirs = [e.get("dir") for e in earlier.get("inputs", ())]
        state = "complete" if earlier.get("complete", True) else "incomplete"
    except (OSError, ValueError, AttributeError, TypeError):
        raise EarlierRunError("holds an unreadable results.json: cannot tell what an earlier "
                              "run wrote there; choose another --out", out) from None
    if not replace:
        raise EarlierRunError(f"holds an earlier analysis ({state}, "
                              f"{earlier.get('created', 'date unknown')}); choose another "
                              "--out, or --replace to remove that analysis first", out)
    for rel in dirs:
        if isinstance(rel, str) and rel:
            folder = (out / rel).resolve()
            if folder.parent == out.resolve() and folder.is_dir():
                shutil.rmtree(folder)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def write_results_json(results: AnalysisResults, out: Path) -> dict[str, Any]:
    """``out/results.json`` (atomic, strict JSON); returns the dictionary written."""
    data = results.to_dict()
    atomic_write_text(out / "results.json", strict_json(data))
    return data


def write_progress(results: AnalysisResults, out: Path) -> None:
    """After each input: results.json with the inputs so far, and the resolved config.yaml."""
    out.mkdir(parents=True, exist_ok=True)
    write_results_json(results, out)
    if not (out / "config.yaml").is_file():
        save_config(results.config, out / "config.yaml")


def write_outputs(results: AnalysisResults, out: Path) -> None:
    """results.json, the resolved config.yaml and report.html under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = write_results_json(results, out)
    save_config(results.config, out / "config.yaml")
    render_report(data, out, worst_k=results.config.report.worst_k,
                  vmax=results.config.report.heat_vmax)


def move_into_tracks(faces: dict[tuple[int, int], dict[str, Any]],
                     track_of: dict[tuple[int, int], int], out: Path, input_dir: str) -> None:
    """Per-face files were written before tracks were known; file them under track_NN/."""
    for key, f in faces.items():
        moved = {}
        for kind, rel in f["files"].items():
            new_rel = rel.replace("/faces/", f"/track_{track_of[key]:02d}/", 1)
            (out / new_rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / rel, out / new_rel)
            moved[kind] = new_rel
        f["files"] = moved
    faces_dir = out / input_dir / "faces"
    if faces_dir.is_dir() and not any(faces_dir.iterdir()):
        faces_dir.rmdir()


def append_error_log(out: Path, path: Path, text: str) -> None:
    """The traceback of an input that failed, for a bug report (the results name the reason)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "errors.log", "a", encoding="utf-8") as fh:  # an append-only log
        fh.write(f"--- {path}\n{text}\n")
