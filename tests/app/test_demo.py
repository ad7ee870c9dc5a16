"""`mrigan demo`, shrunk to seconds: every stage runs for real (MTCNN, self-blends, MRI-DF,
GAN training + export, held-out figures, H.264 videos, analysis, report), on tiny sizes.

Also the real-dataset route (``--set data.root=``) on the FF++ sample.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mrigan.app.cli import main as cli
from mrigan.fileio import read_image

pytestmark = pytest.mark.usefixtures("two_torch_threads")

TINY = ["--set", "gan.model.ngf=8", "--set", "gan.model.ndf=8", "--set", "gan.train.max_steps=2",
        "--set", "gan.train.eval_every=2", "--set", "gan.train.batch_size=4",
        "--set", "gan.data.eval_samples=8", "--set", "gan.train.device=cpu",
        "--set", "analyze.device=cpu", "--set", "analyze.frames.every=3"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = cli(["demo", "--out", str(out), "--set", "data.synthetic.scenes_per_photo=8",
                  "--set", "video.frames=6", "--set", "train_minutes=5", *TINY])
    return rc, out, printed.getvalue()


def test_demo_config_file_matches_the_defaults():
    from mrigan.app.demo.config import DemoConfig, load_demo_config

    root = Path(__file__).resolve().parents[2]
    assert load_demo_config(str(root / "configs/demo.yaml")) == DemoConfig()
    cfg = load_demo_config(str(root / "configs/demo.yaml"), ["gan.train.max_steps=7"])
    assert cfg.gan.train.max_steps == 7 and cfg.gan.model.image_size == 64  # nested keeps 64 px


def test_fake_scene_differs_only_inside_the_face_square():
    from skimage import data

    from mrigan.app.demo.config import DemoSceneConfig
    from mrigan.app.demo.scenes import Photo, blend_into, render_scene, scene_params

    img = data.astronaut()
    photo = Photo("collins", img, (224.0, 117.0, 150.0))
    p = scene_params(np.random.default_rng(3), DemoSceneConfig())
    real, square = render_scene(photo, p, 320)
    fake = blend_into(real, square, seed=5)
    diff = np.abs(fake.astype(int) - real).sum(axis=2) > 0
    x0, y0, x1, y1 = square
    assert diff.any() and not diff[:max(y0, 0)].any() and not diff[y1:].any()
    assert not diff[:, :max(x0, 0)].any() and not diff[:, x1:].any()
    assert np.array_equal(blend_into(real, square, seed=5), fake)  # seeded


def test_demo_runs_end_to_end(demo_run):
    import av

    from mrigan import perceptual
    from mrigan.mri_df_format import read_manifest

    rc, out, printed = demo_run
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["report"]).is_file() and (out / "generator.safetensors").is_file()
    assert (out / "config.yaml").is_file() and (out / "gan" / "config.yaml").is_file()
    assert summary["steps"] == 2 and 0 <= summary["held_out_mean_ssim"] <= 1
    # MRI-DF: each fake's MRI is 1 - SSIM of its crops; a scene's pairs share one split
    rows = read_manifest(out / "data")
    assert {r["split"] for r in rows} <= {"train", "val", "test"} and len(rows) >= 24
    split_of = {}
    for r in rows:
        scene = r["video"].rsplit("_", 1)[0]
        assert split_of.setdefault(scene, r["split"]) == r["split"]
    fakes = [r for r in rows if r["label"] == "fake"][:3]
    for r in fakes:
        real = read_image(out / "data" / r["image"].replace("_fake", "_real"))
        mri = perceptual.mri_map_np(real, read_image(out / "data" / r["image"]))
        stored = read_image(out / "data" / r["mri"]).astype(np.float32) / 255
        assert np.abs(stored - mri).max() <= 0.5 / 255 + 1e-5 and mri.mean() > 0.01
    # videos: the declared frame count, fake frames where truth.json says
    truth = json.loads((out / "videos" / "truth.json").read_text())
    assert truth["collins_fake_middle.mp4"] == [False] * 2 + [True] * 2 + [False] * 2
    with av.open(str(out / "videos" / "hopper_fake.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (320, 320, 3)
    results = json.loads((out / "report" / "results.json").read_text())
    assert results["summary"]["analysed"] == 3
    assert results["config"]["verdict"]["mri_threshold"] == summary["calibration"]["mri_threshold"]
    assert set(summary["verdicts"]) == set(truth)
    assert f"report: {summary['report']}" in printed
    assert f"held-out MRI SSIM {summary['held_out_mean_ssim']:.3f}" in printed


def test_demo_on_a_real_dataset_root(ffpp_root, tmp_path):
    out = tmp_path / "run"
    rc = cli(["demo", "--out", str(out), "--set", f"data.root={ffpp_root}",
              "--set", "data.every=100", "--set", "data.max_frames=2", "--set", "data.val=0.34",
              "--set", "data.test=0.34", "--set", "video.max_videos=2",
              "--set", "video.max_frames=2", "--set", "analyze.faces.max_side=640",
              "--set", "video.every=100", *TINY])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(ffpp_root) and summary["held_out_split"] == "test"
    assert summary["videos_from"] == "the test split"
    results = json.loads((out / "report" / "results.json").read_text())
    paths = [Path(e["path"]) for e in results["inputs"]]
    assert len(paths) == 2 and all(p.is_relative_to(ffpp_root) for p in paths)
    assert [e["frames_read"] for e in results["inputs"]] == [2, 2]  # video.every / max_frames
    frames = results["config"]["frames"]
    assert {k: frames[k] for k in ("every", "max_frames")} == {"every": 100, "max_frames": 2}
    assert sorted(summary["truth"].values()) == [False, True]  # one fake, one original
