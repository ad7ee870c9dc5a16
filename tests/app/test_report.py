"""Overlays, heat maps, timelines and report.html, on real face crops and their true MRIs."""

from __future__ import annotations

import base64
import re

import matplotlib
import numpy as np
import pytest

from mrigan import perceptual
from mrigan.app.report import (
    draw_boxes,
    heat_map,
    mri_intensity,
    overlay,
    render_report,
    timeline_png,
)
from mrigan.fileio import atomic_save_image, read_image


@pytest.fixture(scope="module")
def deepfake_pair(ff_examples):
    """A 160x160 crop of the FF++ example face (original, Deepfakes) and its true MRI."""
    real = read_image(ff_examples / "ex_original.png")
    fake = read_image(ff_examples / "ex_deepfakes.png")
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")[..., 0] > 127
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    sl = np.s_[cy - 80:cy + 80, cx - 80:cx + 80]
    real, fake, mask = real[sl], fake[sl], mask[sl]
    return real, fake, perceptual.mri_map_np(real, fake), mask


def test_heat_map_is_matplotlib_colormap_on_a_fixed_scale():
    vals = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1)
    got = heat_map(vals, vmax=0.5).astype(int)
    ref = matplotlib.colormaps["inferno"](np.clip(vals / 0.5, 0, 1))[..., :3] * 255
    assert np.abs(got - ref).max() <= 4  # a 256-entry table, rounded vs floored bins
    # fixed scale: everything at or above vmax is the top colour, no per-image stretch
    assert (got[0, 50:] == got[0, 100]).all()
    faint = heat_map(vals * 0.1, vmax=0.5)
    assert faint.mean() < got.mean() - 40


def test_overlay_leaves_clean_pixels_alone_and_colours_artifacts(deepfake_pair):
    real, fake, mri, mask = deepfake_pair
    same = overlay(fake, np.zeros_like(mri))
    assert np.array_equal(same, fake)  # a black MRI changes nothing
    ov = overlay(fake, mri, vmax=0.5, max_alpha=0.8)
    level = mri_intensity(mri)
    alpha = 0.8 * np.clip(level / 0.5, 0, 1)[..., None]
    expect = (1 - alpha) * fake + alpha * heat_map(mri, 0.5)
    assert np.abs(ov.astype(float) - expect).max() <= 1.0
    changed = np.abs(ov.astype(int) - fake).sum(axis=2) > 10
    # the overlay marks the manipulated region (ground-truth mask), far less the rest
    assert changed[mask].mean() > 3 * changed[~mask].mean()
    with pytest.raises(ValueError, match="does not match"):
        overlay(fake, mri[:10])


def test_mri_intensity_reads_uint8_pngs_like_floats(deepfake_pair):
    _, _, mri, _ = deepfake_pair
    as_png = perceptual.mri_to_uint8(mri)
    assert np.abs(mri_intensity(as_png) - mri.mean(axis=2)).max() <= 0.5 / 255 + 1e-6


def test_draw_boxes_downscales_and_marks(deepfake_pair, ff_examples):
    frame = read_image(ff_examples / "ex_original.png")  # 640x480
    out = draw_boxes(frame, [(100, 100, 300, 300), (400, 50, 500, 150)], ["0.9", "0.1"],
                     highlight=0, max_side=320)
    assert out.shape == (240, 320, 3)
    assert tuple(out[50, 60]) == (230, 40, 40)  # the highlighted box edge, scaled by 0.5


def test_timeline_png_draws_tracks_and_threshold(tmp_path):
    faces = [{"frame": f, "track": t, "mri_mean": 0.02 + 0.1 * t + 0.001 * f,
              "fake_probability": None} for t in (0, 1) for f in range(0, 100, 10)]
    one = timeline_png(tmp_path / "t1.png", faces, threshold=0.08, score_source="mri_mean",
                       fps=25.0, title="x")
    img = read_image(one)
    assert img.shape[1] == 900 and img.shape[0] > 200
    red = (np.abs(img.astype(int) - (179, 38, 30)).sum(axis=2) < 40).sum()
    assert red > 300  # the dashed threshold line across the plot
    with_prob = [dict(f, fake_probability=0.5) for f in faces]
    two = read_image(timeline_png(tmp_path / "t2.png", with_prob, threshold=0.7,
                                  score_source="detector"))
    assert two.shape[0] > img.shape[0] + 150  # a second panel for the detector


def _results_dict(tmp_path, deepfake_pair):
    real, fake, mri, _ = deepfake_pair
    files = {}
    for name, img in {"face": fake, "mri": perceptual.mri_to_uint8(mri),
                      "overlay": overlay(fake, mri)}.items():
        files[name] = f"01_case/track_00/frame_000010_face0_{name}.png"
        atomic_save_image(tmp_path / files[name], img)
    atomic_save_image(tmp_path / "01_case/frames/frame_000010.jpg", real)
    face = {"frame": 10, "track": 0, "box": [1, 2, 3, 4], "detection_score": 0.99,
            "mri": {"mean": 0.2, "p50": 0.1, "p90": 0.4, "p99": 0.6, "max": 0.9},
            "fake_probability": None, "score": 0.2, "files": files}
    return {
        "created": "now", "generator": {"path": "g.safetensors", "image_size": 64},
        "detector": None,
        "summary": {"inputs": 2, "analysed": 1, "skipped": {"unreadable": 1}, "faces": 1,
                    "verdicts": {"fake": 1}},
        "inputs": [
            {"path": "/cases/<script>alert(1)</script>.mp4", "kind": "video", "status": "analysed",
             "reason": None, "dir": "01_case", "sha256": "ab", "frames_read": 1, "faces": 1,
             "fps": 25.0, "width": 640, "height": 480, "timeline": None, "warnings": [],
             "tracks": [{"id": 0, "faces": 1, "first_frame": 10, "last_frame": 10,
                         "mri_mean": 0.2, "score_mean": 0.2, "score_max": 0.2,
                         "fake_probability_mean": None}],
             "frames": [{"index": 10, "time": 0.4, "thumbnail": "01_case/frames/frame_000010.jpg",
                         "faces": [face]}],
             "verdict": {"label": "fake", "score": 1.0, "rule": "count", "score_source": "mri_mean",
                         "thresholds": {"threshold": 0.08, "fraction": 0.3}, "faces": 1,
                         "explanation": "fake when more than 30% of the faces ..."}},
            {"path": "/cases/broken.mp4", "kind": "video", "status": "unreadable",
             "reason": "/cases/broken.mp4: cannot open", "frames": [], "tracks": [],
             "verdict": None},
        ],
    }


def test_report_embeds_the_files_and_escapes_names(tmp_path, deepfake_pair):
    results = _results_dict(tmp_path, deepfake_pair)
    page = render_report(results, tmp_path).read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page  # a file name is text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp4" in page
    uris = re.findall(r'src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"', page)
    embedded = {base64.b64decode(u) for u in uris}
    for rel in results["inputs"][0]["frames"][0]["faces"][0]["files"].values():
        assert (tmp_path / rel).read_bytes() in embedded  # self-contained: bytes identical
    assert 'data-verdict="fake"' in page and ">FAKE<" in page
    assert "/cases/broken.mp4: cannot open" in page and "unreadable" in page
    assert 'href="01_case/track_00/frame_000010_face0_overlay.png"' in page  # relative links
