"""The analysis speed levers (issue 14 goal 4) leave the figures unchanged, on a real FF++ video.

Levers checked: without ``out_dir`` the report-only work (frame thumbnails, worst-k pictures) is
skipped; the generator gets one stacked uint8 batch instead of a list of faces converted one by
one. The figures (boxes, detection scores, MRI statistics, face scores, tracks, verdict) must be
the same as with the report written, and the MRI statistics the same as the generator's list path
gives on the same crops.
"""

from __future__ import annotations

import pytest
from _gan_setup import write_tiny_generator

from datasets_builders.frames import iter_frames
from mrigan.app.analysis import (
    AnalyzeConfig,
    AnalyzeFacesConfig,
    AnalyzeFramesConfig,
    Analyzer,
    face_crops,
)
from mrigan.app.analysis.models import as_mri_array, mri_stats

pytestmark = pytest.mark.usefixtures("two_torch_threads")

REPORT_ONLY = ("files", "thumbnail", "timeline", "dir")


def _figures(value):
    """results.json content without the report's file names."""
    if isinstance(value, dict):
        return {k: _figures(v) for k, v in value.items() if k not in REPORT_ONLY}
    if isinstance(value, (list, tuple)):
        return [_figures(v) for v in value]
    return value


@pytest.fixture(scope="module")
def runs(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("levers")
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    cfg = AnalyzeConfig(device="cpu", frames=AnalyzeFramesConfig(every=60, max_frames=4),
                        faces=AnalyzeFacesConfig(max_side=640))
    analyzer = Analyzer(write_tiny_generator(base / "gen.safetensors"), None, cfg)
    bare = analyzer.run([video]).to_dict()["inputs"][0]
    written = analyzer.run([video], base / "out").to_dict()["inputs"][0]
    return {"analyzer": analyzer, "video": video, "cfg": cfg, "bare": bare, "written": written}


def test_figures_do_not_depend_on_writing_the_report(runs):
    bare, written = runs["bare"], runs["written"]
    assert bare["status"] == written["status"] == "analysed" and bare["faces"] >= 4
    assert written["timeline"] and any(f.get("thumbnail") for f in written["frames"])
    assert not any(f.get("thumbnail") for f in bare["frames"]) and not bare.get("timeline")
    assert _figures(bare) == _figures(written)


def test_stacked_batch_gives_the_list_paths_maps(runs):
    analyzer, cfg = runs["analyzer"], runs["cfg"]
    gen = analyzer.generator
    def frames():
        return iter_frames(runs["video"], every=cfg.frames.every, max_frames=cfg.frames.max_frames)

    crops = [f.crop for tf in face_crops(frames, analyzer.face_detector, analyzer.face_config)
             for f in tf.faces]
    expected = [mri_stats(m) for m in as_mri_array(gen.predict(list(crops)), len(crops))]
    got = [face["mri"] for fr in runs["bare"]["frames"] for face in fr["faces"]]
    assert len(got) == len(crops) and got == expected


def test_mtcnn_on_one_thread_gives_the_same_figures(runs):
    """Issue 24 goal 2: ``faces.threads: 1`` runs MTCNN on one torch thread and gives back
    torch's two afterwards; boxes, scores, MRIs, tracks and verdict are those of the default
    (torch's two threads, ``runs["bare"]``)."""
    from dataclasses import replace

    import torch

    cfg = runs["cfg"]
    assert cfg.faces.threads is None and AnalyzeFacesConfig().threads is None
    analyzer = Analyzer(runs["analyzer"].generator, None,
                        replace(cfg, faces=replace(cfg.faces, threads=1)))
    one = analyzer.face_detector.first
    assert one.threads == 1
    with_one = []
    orig = one.run_mtcnn
    one.run_mtcnn = lambda *a: (with_one.append(torch.get_num_threads()), orig(*a))[1]
    assert torch.get_num_threads() == 2
    after = analyzer.run([runs["video"]]).to_dict()["inputs"][0]
    assert with_one and set(with_one) == {1}
    assert torch.get_num_threads() == 2  # restored afterwards
    assert _figures(after) == _figures(runs["bare"])


def test_decoding_once_gives_the_same_figures_and_decodes_once(runs, ffpp_root, tmp_path,
                                                               monkeypatch):
    """Issue 24 goal 2: ``frames.decode_once`` (the default) decodes a video once, ahead in a
    thread, and replays it for the later passes; boxes, scores, MRIs, tracks and verdicts equal
    those of decoding each pass (``decode_once: false``), on the FF++ video and on a dark clip
    whose permissive second pass runs (three passes)."""
    from dataclasses import replace

    from _media import darkened_clip

    from mrigan.app.analysis import inputs

    dark = darkened_clip(ffpp_root / "original_sequences/youtube/c23/videos/634.mp4",
                         tmp_path / "dark_634.mp4", (0.1, 0.1, 0.02, 0.02, 0.02), every=60)
    decoded = []
    real = inputs.iter_timed_frames

    def counted(path, *a, **k):
        decoded.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(inputs, "iter_timed_frames", counted)
    cfg = runs["cfg"]
    assert cfg.frames.decode_once and AnalyzeFramesConfig().decode_once
    results = {}
    for once in (True, False):
        analyzer = Analyzer(runs["analyzer"].generator, None,
                            replace(cfg, frames=replace(cfg.frames, decode_once=once, every=1)))
        decoded.clear()
        results[once] = analyzer.run([runs["video"], dark]).to_dict()["inputs"]
        assert decoded.count(dark) == (1 if once else 3)  # detection, second pass, crops
        assert decoded.count(runs["video"]) == (1 if once else 2)
    assert results[True][1]["second_pass"] is True and results[True][1]["faces"] >= 1
    assert [_figures(r) for r in results[True]] == [_figures(r) for r in results[False]]


def test_exact_mtcnn_cascade_gives_the_figures_of_facenets_detect_face(runs):
    """Issue 24 goal 2: the analysis with MTCNN run by facenet-pytorch's ``detect_face`` (the
    bench's *before*, ``bench/analyze.py``) and with the exact cascade (the default,
    ``mtcnn_cascade``) gives the same boxes, scores, MRIs, tracks and verdict."""
    from _media import bench_module

    bench = bench_module("analyze")
    before = Analyzer(runs["analyzer"].generator, None, runs["cfg"],
                      face_detector=bench.facenet_detectors(runs["analyzer"].face_config))
    assert isinstance(before.face_detector.first, bench.FacenetMTCNN)
    got = before.run([runs["video"]]).to_dict()["inputs"][0]
    assert _figures(got) == _figures(runs["bare"])
