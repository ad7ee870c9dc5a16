"""The analyses behind the page: a queue and ``workers`` threads (one by default), each with its
own :class:`mrigan.app.analysis.Analyzer` (models loaded once per thread), running exactly what
``mrigan analyze INPUT --out CASES/<id>`` runs. :class:`CaseMonitor` (an analysis
:class:`~mrigan.app.analysis.Monitor`) turns the pipeline's progress hooks into the case's live
figures and its cancel flag into :class:`~mrigan.app.analysis.AnalysisCancelled`.

A case whose analysis raises is marked failed with a one-line error and the worker goes on to
the next; so is a case where no input could be analysed (the command line's exit status 1), its
report still written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mrigan.app.analysis import AnalysisCancelled, Analyzer, Monitor
from mrigan.app.serve.store import INTERRUPTED, Case, CaseStore
from mrigan.errors import MriganError

log = logging.getLogger(__name__)

_STOP = None


class CaseMonitor(Monitor):
    """Live progress of one case: phase, frames scanned for faces (the detection pass) and
    done (the scoring pass), faces, a fraction 0..1 (half for finding the faces, half for
    scoring them; never goes back) and the cancel flag."""

    def __init__(self, case: Case, stopping: threading.Event) -> None:
        self.case = case
        self.stopping = stopping
        self.total: int | None = None
        self.decoded = 0
        self.live = case.live
        self.live.update(phase="starting", frames_scanned=0, frames_done=0, frames_total=None,
                         faces=0, progress=0.0)

    def input_started(self, index: int, count: int, path: Path, sampled_frames: int | None) -> None:
        self.total = sampled_frames
        self.live.update(phase="finding faces", frames_total=sampled_frames)

    def pass_started(self) -> None:
        self.decoded = 0

    def frame_decoded(self) -> None:
        self.decoded += 1
        if self.live["phase"] == "finding faces":
            self.live["frames_scanned"] = self.decoded
            if self.total:
                self._advance(0.5 * min(1.0, self.decoded / self.total))

    def frame_done(self, faces: int) -> None:
        self.live["phase"] = "scoring faces"
        self.live["frames_done"] += 1
        self.live["faces"] += faces
        if self.total:
            self._advance(0.5 + 0.5 * min(1.0, self.live["frames_done"] / self.total))

    def frames_finished(self) -> None:
        self.live["phase"] = "writing the report"

    def cancelled(self) -> bool:
        return self.case.cancel_requested or self.stopping.is_set()

    def _advance(self, fraction: float) -> None:
        self.live["progress"] = max(self.live["progress"], min(0.99, fraction))


class Workers:
    """``count`` threads taking cases off one queue. ``make_analyzer()`` builds a thread's
    Analyzer on its first case; ``first`` (already built, e.g. to check the models before the
    server starts) is used by the first thread."""

    def __init__(self, store: CaseStore, make_analyzer: Callable[[], Analyzer], count: int = 1,
                 first: Analyzer | None = None) -> None:
        self.store = store
        self.make_analyzer = make_analyzer
        self.count = count
        self._spare = [first] if first is not None else []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._loop, name=f"mrigan-serve-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, case: Case) -> None:
        self._queue.put(case.id)

    def cancel(self, case: Case) -> None:
        """A queued case is cancelled at once; a running one at its next frame."""
        case.cancel_requested = True
        if case.status == "queued":
            self.store.update(case, status="cancelled", finished=time.time())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the running analyses (marked failed: interrupted) and the threads."""
        self.stopping.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)

    # -- the thread

    def _loop(self) -> None:
        analyzer: Analyzer | None = None
        while True:
            case_id = self._queue.get()
            if case_id is _STOP or self.stopping.is_set():
                return
            case = self.store.get(case_id)
            if case is None or case.status != "queued":
                continue  # cancelled or removed while queued
            if analyzer is None:
                try:
                    analyzer = self._spare.pop() if self._spare else self.make_analyzer()
                except MriganError as exc:
                    self.store.update(case, status="failed", error=exc.one_line(),
                                      finished=time.time())
                    continue
            self._run(analyzer, case)

    def _run(self, analyzer: Analyzer, case: Case) -> None:
        self.store.update(case, status="running", started=time.time())
        log.info("case %s (%s): running", case.id, case.name)
        try:
            status, error = self._analyse(analyzer, case)
        except Exception as exc:  # noqa: BLE001 - a bug in one case must not stop the server
            log.exception("case %s (%s) failed", case.id, case.name)
            status, error = "failed", " ".join(f"{type(exc).__name__}: {exc}".split())
        self.store.update(case, status=status, error=error, finished=time.time())
        log.info("case %s (%s): %s%s", case.id, case.name, status, f": {error}" if error else "")

    def _analyse(self, analyzer: Analyzer, case: Case) -> tuple[str, str | None]:
        """The case's analysis: ``(status, one-line error or None)``."""
        monitor = CaseMonitor(case, self.stopping)
        try:
            results = analyzer.run([case.input], self.store.case_dir(case.id), progress=monitor)
        except AnalysisCancelled:
            if self.stopping.is_set() and not case.cancel_requested:
                return "failed", INTERRUPTED
            return "cancelled", None
        except MriganError as exc:
            return "failed", exc.one_line().replace(case.input, case.name)
        if any(r.analysed for r in results.inputs):
            return "done", None
        first = results.inputs[0]  # nothing analysed: the command line's exit status 1
        return "failed", " ".join(f"{first.status}: {first.reason}".replace(case.input,
                                                                             case.name).split())
