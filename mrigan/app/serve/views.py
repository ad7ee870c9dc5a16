"""What the API says about a case (:class:`CaseViews`): its record, its live progress (with
elapsed time and an ETA), its inputs' verdicts from ``results.json`` (read again only when the
file changes) and the links to its report and downloads. File paths on the server never
appear: an input is named as the analyst knows it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mrigan.app.serve.store import FINISHED, Case, CaseStore


class CaseViews:
    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self._summaries: dict[str, tuple[tuple[int, int], list[dict[str, Any]], str | None]] = {}

    def view(self, case: Case) -> dict[str, Any]:
        now = time.time()
        live = case.live
        running = case.status == "running"
        progress = 1.0 if case.status == "done" else float(live.get("progress", 0.0))
        elapsed = None if case.started is None else (case.finished or now) - case.started
        eta = None
        if running and elapsed is not None and progress >= 0.02:
            eta = elapsed * (1.0 - progress) / progress
        out = self.store.case_dir(case.id)
        finished = case.status in FINISHED
        inputs, warning = self._summary(case, out)
        return {
            "id": case.id, "name": case.name, "kind": case.kind, "source": case.source,
            "status": case.status, "progress": round(progress, 4), "error": case.error,
            "phase": live.get("phase") if running else None,
            "frames_scanned": live.get("frames_scanned"), "frames_done": live.get("frames_done"),
            "frames_total": live.get("frames_total"),
            "faces": live.get("faces"), "created": case.created, "elapsed": elapsed, "eta": eta,
            "cancel_requested": case.cancel_requested, "inputs": inputs, "warning": warning,
            "report": (f"/cases/{case.id}/report.html"
                       if finished and (out / "report.html").is_file() else None),
            "results": (f"/cases/{case.id}/results.json"
                        if finished and (out / "results.json").is_file() else None),
            "zip": f"/api/cases/{case.id}/zip" if finished else None,
        }

    def _summary(self, case: Case, out: Path) -> tuple[list[dict[str, Any]], str | None]:
        """The inputs of a case's results.json, and the generator card's warning."""
        path = out / "results.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return [], None
        key = (st.st_mtime_ns, st.st_size)
        cached = self._summaries.get(case.id)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return [], None  # being replaced: atomic writes make this rare; next poll reads it
        inputs = []
        for e in data.get("inputs", []):
            verdict = e.get("verdict") or {}
            reason = (e.get("reason") or "").replace(case.input, case.name) or None
            inputs.append({"path": case.name, "status": e.get("status"),
                           "verdict": verdict.get("label"), "score": verdict.get("score"),
                           "faces": e.get("faces", 0), "frames_read": e.get("frames_read", 0),
                           "reason": reason})
        warning = ((data.get("generator") or {}).get("card") or {}).get("warning") or None
        self._summaries[case.id] = (key, inputs, warning)
        return inputs, warning
