"""The analysis' progress hook (`mrigan.app.analysis.Monitor`), which the command line's bar and
`mrigan serve` both use: what it is told, in order, on a real image and FF++ video, and a cancel
that stops the run between frames, keeping what earlier inputs wrote."""

from __future__ import annotations

import json

import pytest
from _gan_setup import write_tiny_generator

from mrigan.app.analysis import AnalysisCancelled, AnalyzeConfig, Analyzer, Monitor
from mrigan.config import from_dict

pytestmark = pytest.mark.usefixtures("two_torch_threads")


class Recorder(Monitor):
    def __init__(self, stop_at_input: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_at_input = stop_at_input
        self.input = 0

    def input_started(self, index, count, path, sampled_frames):
        self.input = index
        self.events.append(("input", index, count, path.name, sampled_frames))

    def pass_started(self):
        self.events.append(("pass",))

    def frame_decoded(self):
        self.events.append(("decoded",))

    def frame_done(self, faces):
        self.events.append(("done", faces))

    def frames_finished(self):
        self.events.append(("finished",))

    def cancelled(self):
        return self.input == self.stop_at_input and ("decoded",) in self.events[-3:]


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    gen = write_tiny_generator(tmp_path_factory.mktemp("progress") / "gen.safetensors")
    cfg = from_dict(AnalyzeConfig, {"device": "cpu", "frames": {"every": 100, "max_frames": 2},
                                    "faces": {"max_side": 640}})
    return Analyzer(gen, None, cfg)


def test_the_monitor_hears_every_input_pass_and_frame(analyzer, ff_examples, ffpp_root, tmp_path):
    image = ff_examples / "ex_deepfakes.png"
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    rec = Recorder()
    results = analyzer.run([image, video], tmp_path / "out", progress=rec)
    assert [r.status for r in results.inputs] == ["analysed", "analysed"]
    starts = [i for i, e in enumerate(rec.events) if e[0] == "input"]
    assert [rec.events[i] for i in starts] == [("input", 1, 2, "ex_deepfakes.png", None),
                                               ("input", 2, 2, "519.mp4", 2)]
    for begin, end in zip(starts, [*starts[1:], len(rec.events)], strict=True):
        mine = rec.events[begin:end]
        done = [e for e in mine if e[0] == "done"]
        result = results.inputs[len([s for s in starts if s <= begin]) - 1]
        assert len(done) == result.frames_read and sum(f for _, f in done) == result.faces
        assert mine[-1] == ("finished",)
        passes = mine.count(("pass",))
        assert passes >= 2  # detection (+ the second pass when needed), then scoring
        assert mine.count(("decoded",)) == passes * result.frames_read


def test_a_cancel_stops_between_frames_and_keeps_earlier_inputs(analyzer, ff_examples,
                                                               ffpp_root, tmp_path):
    image = ff_examples / "ex_deepfakes.png"
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    out = tmp_path / "out"
    rec = Recorder(stop_at_input=2)
    with pytest.raises(AnalysisCancelled):
        analyzer.run([image, video], out, progress=rec)
    assert rec.events[-1] == ("finished",) and rec.events.count(("decoded",)) <= 3
    kept = json.loads((out / "results.json").read_text())
    assert [e["path"] for e in kept["inputs"]] == [str(image)]  # input 1 as it was written
    assert not (out / "report.html").exists()
