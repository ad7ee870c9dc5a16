"""How a caller follows (and stops) a running analysis: :class:`Monitor`.

``Analyzer.run(..., progress=monitor)`` calls the monitor's hooks while it works: when an input
starts (with the number of sampled frames when the container says), for every frame decoded in
any pass (face detection decodes an input once or twice, the scoring pass once more) and for
every frame of the scoring pass. ``cancelled()`` is asked at each of those points; when it
answers True the run stops with :class:`AnalysisCancelled` (nothing of the current input is
recorded; what earlier inputs wrote stays). The command line's tqdm bar
(:class:`TqdmMonitor`) and the web page's live progress (``mrigan.app.serve``) are both monitors.
"""

from __future__ import annotations

from pathlib import Path

from mrigan.errors import MriganError


class AnalysisCancelled(MriganError, RuntimeError):
    """The analysis was stopped by its monitor (``Monitor.cancelled()`` answered True)."""


class Monitor:
    """Hooks the analysis calls; this base class follows nothing and never cancels."""

    def input_started(self, index: int, count: int, path: Path, sampled_frames: int | None) -> None:
        """Input ``index`` (1-based) of ``count`` starts; ``sampled_frames`` may be unknown."""

    def pass_started(self) -> None:
        """A new decoding pass over the current input starts (detection, second pass, scoring)."""

    def frame_decoded(self) -> None:
        """One frame of the current pass was decoded."""

    def frame_done(self, faces: int) -> None:
        """One frame of the scoring pass is done: its ``faces`` faces were cropped and queued
        for the generator (scored in batches of ``batch_size``)."""

    def frames_finished(self) -> None:
        """The current input's frames are all read (or its reading failed); its last faces are
        scored and its results written next."""

    def cancelled(self) -> bool:
        """True to stop the analysis at the next frame or input."""
        return False

    def check(self) -> None:
        """Raise :class:`AnalysisCancelled` when :meth:`cancelled` says so."""
        if self.cancelled():
            raise AnalysisCancelled("analysis cancelled")


class TqdmMonitor(Monitor):
    """The command line's progress bar: one tqdm bar of the scoring pass's frames per input."""

    def __init__(self) -> None:
        self._bar = None

    def input_started(self, index: int, count: int, path: Path, sampled_frames: int | None) -> None:
        from tqdm import tqdm

        self.frames_finished()
        self._bar = tqdm(desc=path.name[:40], total=sampled_frames, unit="frame", leave=False,
                         dynamic_ncols=True)

    def frame_done(self, faces: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def frames_finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
