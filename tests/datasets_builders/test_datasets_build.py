"""The MRI-DF builder end to end on the real FF++ sample: alignment, MRIs, counts, grouped
splits, untouched inputs, kill-and-resume, shards + merge, DFDC's missing files, the CLI."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from datasets_builders import mri_df
from datasets_builders.faces import FaceBox, FaceDetector, crop_face
from datasets_builders.frames import iter_frames
from datasets_builders.mri_df import (
    BuildConfig,
    BuildError,
    BuildSourceConfig,
    BuildSplitConfig,
    FaceDetectionConfig,
    build_mri_df,
    merge_shards,
)
from mrigan.app.cli import main as cli_main
from mrigan.fileio import read_image, sha256_file
from mrigan.mri_df_format import MriDfDataset, balanced_indices, read_manifest

FAST_FACES = FaceDetectionConfig(device="cpu", max_side=320, batch_size=6, size=96)


def _tree_hashes(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (sha256_file(p), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def detector():
    """One MTCNN for the module's builds (loading it costs seconds on a busy machine)."""
    torch.set_num_threads(2)
    f = FAST_FACES
    return FaceDetector(device=f.device, thresholds=f.thresholds, min_face_size=f.min_face_size,
                        max_side=f.max_side, batch_size=f.batch_size)


@pytest.fixture(scope="module")
def ffpp_build(ffpp_root, tmp_path_factory, detector):
    before = _tree_hashes(ffpp_root)
    out = tmp_path_factory.mktemp("mri_df_ffpp")
    cfg = BuildConfig(out=str(out), sources=(BuildSourceConfig(kind="ffpp", root=str(ffpp_root)),),
                      every=30, max_frames=6, faces=FAST_FACES, progress=False,
                      split=BuildSplitConfig(val=0.34, test=0.0))
    logs: list[str] = []
    summary = build_mri_df(cfg, log=logs.append, detector=detector)
    return {"cfg": cfg, "out": out, "summary": summary, "logs": logs, "before": before}


def test_inputs_unchanged(ffpp_build, ffpp_root):
    assert _tree_hashes(ffpp_root) == ffpp_build["before"]


def test_manifest_counts_match_the_detected_faces(ffpp_build):
    out, summary = ffpp_build["out"], ffpp_build["summary"]
    rows = read_manifest(out)
    boxes = {p.stem: json.loads(p.read_text()) for p in (out / "boxes").glob("*.json")}
    assert sorted(boxes) == ["ffpp__original__004", "ffpp__original__519", "ffpp__original__634"]
    faces_per_original = {k.split("__")[-1]: sum(len(b) for b in v["boxes"]) for k, v in boxes.items()}
    assert all(v["frames"] == [0, 30, 60, 90, 120, 150] for v in boxes.values())
    by_video = defaultdict(int)
    for r in rows:
        by_video[r["video"]] += 1
    for orig, fake in (("004", "NeuralTextures/004_982"), ("519", "Deepfakes/519_515"),
                       ("634", "FaceSwap/634_660")):
        n = faces_per_original[orig]
        assert n >= 6  # a face in every sampled frame of these interviews
        assert by_video[f"ffpp/original/{orig}"] == n and by_video[f"ffpp/{fake}"] == n
    assert summary.pairs_written == len(rows) == 2 * sum(faces_per_original.values())
    assert summary.videos_read == 6 and summary.skipped == {}
    assert any(line.startswith("pairs written:") for line in ffpp_build["logs"])


def test_pairs_are_aligned_crops_of_the_same_box(ffpp_build, ffpp_root):
    out = ffpp_build["out"]
    rows = read_manifest(out)
    fake_row = next(r for r in rows if r["video"] == "ffpp/FaceSwap/634_660" and r["frame"] == "60")
    real_row = next(r for r in rows if r["video"] == fake_row["original"]
                    and r["frame"] == "60" and r["track"] == fake_row["track"])
    cached = json.loads((out / "boxes" / "ffpp__original__634.json").read_text())
    box = FaceBox.from_list(cached["boxes"][cached["frames"].index(60)][int(fake_row["track"])])
    frames = {}
    for name, video in (("real", "original_sequences/youtube/c23/videos/634.mp4"),
                        ("fake", "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4")):
        frames[name] = dict(iter_frames(ffpp_root / video, every=60, max_frames=2))[60]
    # both crops are cut from their own video with the ORIGINAL's box, pixel for pixel
    np.testing.assert_array_equal(read_image(out / real_row["image"]), crop_face(frames["real"], box, 1.3, 96))
    np.testing.assert_array_equal(read_image(out / fake_row["image"]), crop_face(frames["fake"], box, 1.3, 96))


def test_mris_are_one_minus_ssim_and_mark_the_fakes(ffpp_build):
    out = ffpp_build["out"]
    rows = read_manifest(out)
    real_of = {(r["video"], r["frame"], r["track"]): r for r in rows if r["label"] == "real"}
    fake_means, border_vs_centre = defaultdict(list), []
    for r in rows:
        mri = read_image(out / r["mri"]).astype(np.float64) / 255
        if r["label"] == "real":
            assert mri.max() == 0
            continue
        fake_means[r["method"]].append(mri.mean())
        c = mri.shape[0] // 4
        border_vs_centre.append((mri[c:-c, c:-c].mean(), np.concatenate([mri[:8].ravel(), mri[-8:].ravel()]).mean()))
        if r["frame"] == "0":  # check the stored map against scikit-image's SSIM
            real = read_image(out / real_of[(r["original"], r["frame"], r["track"])]["image"])
            fake = read_image(out / r["image"])
            _, s = structural_similarity(real, fake, channel_axis=2, full=True, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False, data_range=255)
            assert np.abs(mri - np.clip(1 - s, 0, 1)).max() <= 0.5 / 255 + 1e-4
    assert set(fake_means) == {"Deepfakes", "FaceSwap", "NeuralTextures"}
    for method, means in fake_means.items():
        assert np.mean(means) > 0.03, method  # black (0) for every real crop
    # the manipulation is in the face: the centre of the crop is brighter than its top/bottom
    centre, border = np.mean(border_vs_centre, axis=0)
    assert centre > 2 * border


def test_splits_grouped_by_identity_and_video(ffpp_build):
    rows = read_manifest(ffpp_build["out"])
    split_of_video, split_of_identity = defaultdict(set), defaultdict(set)
    for r in rows:
        split_of_video[r["video"]].add(r["split"])
        split_of_identity[r["identity"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of_video.values())
    assert all(len(s) == 1 for s in split_of_identity.values())
    assert {r["split"] for r in rows} == {"train", "val"}
    for r in rows:  # a fake is in its original's split
        if r["label"] == "fake":
            assert split_of_video[r["original"]] == split_of_video[r["video"]]
    ds = MriDfDataset(ffpp_build["out"], split="train", image_size=64)
    epoch = balanced_indices(ds.labels, epoch=0, seed=0)
    assert sum(ds.labels[i] for i in epoch) * 2 == len(epoch)
    assert ds[epoch[0]]["image"].shape == (3, 64, 64)


def _small_cfg(out: Path, ffpp_root: Path, **kw) -> BuildConfig:
    return BuildConfig(out=str(out), sources=(BuildSourceConfig(kind="ffpp", root=str(ffpp_root)),),
                       every=100, max_frames=2, faces=FAST_FACES, progress=False, **kw)


@pytest.fixture(scope="module")
def reference_build(ffpp_root, tmp_path_factory, detector):
    out = tmp_path_factory.mktemp("reference")
    build_mri_df(_small_cfg(out, ffpp_root), log=lambda _l: None, detector=detector)
    return out


def _same_dataset(a: Path, b: Path) -> None:
    assert (a / "manifest.csv").read_text() == (b / "manifest.csv").read_text()
    for r in read_manifest(a):
        for col in ("image", "mri"):
            assert (a / r[col]).read_bytes() == (b / r[col]).read_bytes()


def test_killed_build_resumes_to_the_same_manifest(reference_build, ffpp_root, tmp_path, monkeypatch,
                                                    detector):
    out = tmp_path / "killed"
    calls = []
    real_process = mri_df._process_unit

    def dies_after_two(unit, ctx):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(unit.key)
        return real_process(unit, ctx)

    monkeypatch.setattr(mri_df, "_process_unit", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_mri_df(_small_cfg(out, ffpp_root), log=lambda _l: None, detector=detector)
    assert len(list((out / "done").glob("*.json"))) == 2 and not (out / "manifest.csv").exists()

    redone = []
    monkeypatch.setattr(mri_df, "_process_unit", lambda u, c: redone.append(u.key) or real_process(u, c))
    summary = build_mri_df(_small_cfg(out, ffpp_root), log=lambda _l: None, detector=detector)
    assert len(redone) == 1 and redone[0] not in calls  # finished videos are not redone
    assert summary.units_resumed == 2 and summary.units_built == 1
    _same_dataset(reference_build, out)


def test_two_worker_processes_write_the_same_dataset(reference_build, ffpp_root, tmp_path, detector):
    """Units built in 2 spawned processes: records joined in unit order, so the manifest and
    every PNG are byte-identical to the one-process build (the boxes too)."""
    out = tmp_path / "workers"
    summary = build_mri_df(_small_cfg(out, ffpp_root, workers=2), log=lambda _l: None,
                           detector=detector)
    assert summary.units_built == 3 and summary.frames_decoded > 0
    _same_dataset(reference_build, out)
    for p in (reference_build / "boxes").glob("*.json"):
        assert (out / "boxes" / p.name).read_bytes() == p.read_bytes()


_KILLED_BUILD = """
import multiprocessing, sys, time
from datasets_builders import build_run
from datasets_builders.mri_df import BuildConfig, BuildSourceConfig, FaceDetectionConfig, build_mri_df

save = build_run.save_record

def save_then_hang(*args, **kw):  # the parent records unit 1, then is killed (test below)
    save(*args, **kw)
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    time.sleep(120)

build_run.save_record = save_then_hang
faces = FaceDetectionConfig(device="cpu", max_side=320, batch_size=6, size=96)
build_mri_df(BuildConfig(out=sys.argv[1], sources=(BuildSourceConfig(kind="ffpp", root=sys.argv[2]),),
                         every=100, max_frames=2, faces=faces, progress=False, workers=2),
             log=lambda _l: None)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return True


@pytest.mark.slow  # a fresh interpreter and 2 spawned workers: ~70 s on 2 loaded cores
def test_two_worker_build_killed_with_sigkill_resumes(reference_build, ffpp_root, tmp_path, detector):
    """kill -9 of a 2-worker build after its first record: its workers exit (no orphans), and
    the resumed build (1 worker) redoes only the rest and equals the uninterrupted build."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sigkill"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(out), str(ffpp_root)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(list((out / "done").glob("*.json"))) == 1, "the build ended before its record"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(workers) == 2 and not (out / "manifest.csv").exists()
    deadline = time.monotonic() + 15
    while not all(_gone(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_gone(p) for p in workers), "orphaned worker processes"
    summary = build_mri_df(_small_cfg(out, ffpp_root), log=lambda _l: None, detector=detector)
    assert summary.units_resumed == 1 and summary.units_built == 2
    _same_dataset(reference_build, out)


def test_shards_then_merge_equal_one_build(reference_build, ffpp_root, tmp_path, detector):
    out = tmp_path / "sharded"
    shutil.copytree(reference_build / "boxes", out / "boxes")  # boxes cached by one machine are reused
    first = build_mri_df(_small_cfg(out, ffpp_root, shard="1/2"), log=lambda _l: None, detector=detector)
    assert first.units_in_shard == 2 and first.units_pending == 1 and first.manifest is None
    with pytest.raises(BuildError, match="1 units are not built yet"):
        merge_shards(_small_cfg(out, ffpp_root), log=lambda _l: None)
    second = build_mri_df(_small_cfg(out, ffpp_root, shard="2/2"), log=lambda _l: None, detector=detector)
    assert second.units_in_shard == 1 and second.manifest  # the last shard writes the manifest
    merge_shards(_small_cfg(out, ffpp_root), log=lambda _l: None)
    _same_dataset(reference_build, out)


def test_output_inside_input_is_refused(ffpp_root):
    with pytest.raises(BuildError, match="inside the input folder"):
        build_mri_df(_small_cfg(ffpp_root / "mri_df", ffpp_root))


def _ffpp_csv(tmp_path: Path, ffpp_root: Path) -> Path:
    rel = os.path.relpath(ffpp_root, tmp_path)
    csv = tmp_path / "videos.csv"
    csv.write_text("path,label,original\n"
                   f"{rel}/manipulated_sequences/FaceSwap/c23/videos/634_660.mp4,fake,"
                   f"{rel}/original_sequences/youtube/c23/videos/634.mp4\n")
    return csv


def test_cli_quick_csv_mode(tmp_path, ffpp_root, capsys):
    csv = _ffpp_csv(tmp_path, ffpp_root)
    out = tmp_path / "out"
    code = cli_main(["build-dataset", "--csv", str(csv), "--out", str(out), "--every", "50",
                     "--size", "64", "--max-frames", "2", "--no-progress",
                     "--set", "faces.max_side=320", "--set", "faces.device=cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pairs written: 4 (2 fake, 2 real)" in printed
    rows = read_manifest(out)
    assert [(r["label"], r["frame"]) for r in rows] == [("real", "0"), ("real", "50"),
                                                        ("fake", "0"), ("fake", "50")]
    assert read_image(out / rows[0]["image"]).shape == (64, 64, 3)
    assert (out / "config.yaml").is_file()


def test_dfdc_missing_files_are_counted_not_fatal(tmp_path, ffpp_root, shared_data, capsys):
    csv = _ffpp_csv(tmp_path, ffpp_root)
    config = tmp_path / "build.yaml"
    config.write_text(f"""
out: {tmp_path / 'out'}
every: 100
max_frames: 1
progress: false
faces: {{device: cpu, max_side: 320, size: 64}}
sources:
  - {{kind: dfdc, root: {shared_data / 'dfdc_unpaired'}, fraction: 0.5}}
  - {{kind: dfdc, root: {shared_data / 'dfdc_unpaired'}, name: dfdc_all}}
  - {{kind: csv, root: {csv}}}
""")
    assert cli_main(["build-dataset", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # each DFDC source: one listed file absent, one fake whose original is absent
    assert summary["skipped"] == {"listed file missing": 2, "original missing": 2}
    assert "original missing" in printed and summary["pairs_written"] == 2
    assert {r["source"] for r in read_manifest(tmp_path / "out")} == {"csv"}


def test_config_files_load():
    from mrigan.config import load_config

    configs = sorted(Path(__file__).resolve().parents[2].glob("configs/build_*.yaml"))
    assert configs, "configs/build_*.yaml missing"
    for path in configs:
        cfg = load_config(BuildConfig, path)
        assert cfg.sources and cfg.faces.thresholds == (0.85, 0.95, 0.95)


def test_output_holding_inputs_is_refused(tmp_path, ffpp_root):
    csv = _ffpp_csv(tmp_path, ffpp_root)
    cfg = BuildConfig(out=str(ffpp_root.parent), sources=(BuildSourceConfig(kind="csv", root=str(csv)),))
    with pytest.raises(BuildError, match="inside the output folder"):
        build_mri_df(cfg)


def test_image_pairs_and_real_image_folder(tmp_path, ff_examples, detector):
    csv = tmp_path / "pairs.csv"
    csv.write_text("path,label,original,method\n"
                   f"{ff_examples / 'ex_deepfakes.png'},fake,{ff_examples / 'ex_original.png'},Deepfakes\n")
    cfg = BuildConfig(out=str(tmp_path / "out"), progress=False, faces=FAST_FACES,
                      sources=(BuildSourceConfig(kind="csv", root=str(csv)),
                               BuildSourceConfig(kind="images", root=str(ff_examples))))
    summary = build_mri_df(cfg, log=lambda _l: None, detector=detector)
    rows = read_manifest(tmp_path / "out")
    # the two binary masks in ff_examples hold no face: counted, not fatal
    assert summary.skipped == {"no face found": 2}
    assert sorted((r["source"], r["label"]) for r in rows) == [
        ("csv", "fake"), ("csv", "real"), ("images", "real"), ("images", "real"), ("images", "real")]
    fake = next(r for r in rows if r["label"] == "fake")
    assert fake["method"] == "Deepfakes" and fake["frame"] == "0"
    assert read_image(tmp_path / "out" / fake["mri"]).mean() / 255 > 0.05


def test_unreadable_videos_are_skipped_and_counted(tmp_path, ffpp_root, detector):
    media = tmp_path / "media"  # the inputs' folder: the output goes beside it, never inside
    media.mkdir()
    (media / "broken_real.mp4").write_text("not a video")
    (media / "broken_fake.mp4").write_bytes(
        (ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4").read_bytes()[:3000])
    good = ffpp_root / "original_sequences/youtube/c23/videos/634.mp4"
    csv = media / "list.csv"
    csv.write_text(f"path,label,original\nbroken_real.mp4,real,\nbroken_fake.mp4,fake,{good}\n")
    cfg = BuildConfig(out=str(tmp_path / "out"), progress=False, faces=FAST_FACES, every=100,
                      max_frames=1, sources=(BuildSourceConfig(kind="csv", root=str(csv)),))
    summary = build_mri_df(cfg, log=lambda _l: None, detector=detector)
    assert summary.skipped == {"fake unreadable": 1, "original unreadable": 1}
    rows = read_manifest(tmp_path / "out")
    assert [r["label"] for r in rows] == ["real"] and rows[0]["identity"] == "634"


def _image_folder(root: Path, n: int) -> Path:
    from mrigan.fileio import atomic_save_image

    for i in range(n):
        atomic_save_image(root / f"person{i:03d}.png", np.full((8, 8, 3), i % 256, np.uint8))
    return root


def test_source_fraction_is_nested_and_splits_are_exact(tmp_path):
    folder = _image_folder(tmp_path / "faces", 200)

    def units(fraction, **split):
        cfg = BuildConfig(out=str(tmp_path / "out"), split=BuildSplitConfig(**split) if split else BuildSplitConfig(),
                          sources=(BuildSourceConfig(kind="images", root=str(folder), fraction=fraction),))
        return mri_df.plan_units(cfg).units

    half = units(0.5)
    assert 80 <= len(half) <= 120 and [u.key for u in half] == [u.key for u in units(0.5)]
    more = {u.key for u in units(0.7)}
    assert {u.key for u in half} < more  # raising the fraction only adds videos
    splits = [u.split for u in units(1.0, val=0.1, test=0.2)]
    assert (splits.count("val"), splits.count("test"), splits.count("train")) == (20, 40, 140)


def test_augmentation_plan_is_saved_and_applied_to_both(tmp_path, ff_examples, detector):
    from datasets_builders.augment import PlanRunner, load_plan, plan_label
    from datasets_builders.mri_df import BuildAugmentConfig
    from mrigan import perceptual

    csv = tmp_path / "pairs.csv"
    csv.write_text("path,label,original\n"
                   f"{ff_examples / 'ex_deepfakes.png'},fake,{ff_examples / 'ex_original.png'}\n")
    cfg = BuildConfig(out=str(tmp_path / "out"), progress=False, faces=FAST_FACES, seed=4,
                      sources=(BuildSourceConfig(kind="csv", root=str(csv)),),
                      augment=BuildAugmentConfig(augment_fraction=1.0, distraction_fraction=1.0,
                                            augmentations=("noise",)))
    build_mri_df(cfg, log=lambda _l: None, detector=detector)
    out = tmp_path / "out"
    (plan_file,) = (out / "plans").glob("*.json")
    plan = load_plan(plan_file)
    assert plan["augmentation"]["name"] == "noise" and plan["distraction"] is not None
    rows = read_manifest(out)
    assert {r["augmentation"] for r in rows} == {plan_label(plan)}
    real_row = next(r for r in rows if r["label"] == "real")
    fake_row = next(r for r in rows if r["label"] == "fake")
    # the stored crops are crops of the AUGMENTED frames, both with the same plan
    runner = PlanRunner(plan)
    cache = json.loads(next((out / "boxes").glob("*.json")).read_text())
    box = FaceBox.from_list(cache["boxes"][0][0])
    for row, name in ((real_row, "ex_original.png"), (fake_row, "ex_deepfakes.png")):
        expected = crop_face(runner(read_image(ff_examples / name), 0), box, 1.3, 96)
        np.testing.assert_array_equal(read_image(out / row["image"]), expected)
    mri = read_image(out / fake_row["mri"]).astype(np.float64) / 255
    expected = perceptual.mri_map_np(read_image(out / real_row["image"]), read_image(out / fake_row["image"]))
    assert np.abs(mri - expected).max() <= 0.5 / 255 + 1e-4
    assert cache["key"]["settings"]["plan"] == plan  # boxes of augmented frames are cached per plan


def test_per_source_augmentation_switch(tmp_path, ff_examples, detector):
    """``augment: false`` on a source (the paper's real-face sets) leaves its units unaugmented
    while another source of the same build is augmented."""
    from datasets_builders.mri_df import BuildAugmentConfig

    folders = {}
    for name in ("aug", "plain"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / "pairs.csv").write_text(
            "path,label,original\n"
            f"{ff_examples / 'ex_deepfakes.png'},fake,{ff_examples / 'ex_original.png'}\n")
    cfg = BuildConfig(out=str(tmp_path / "out"), progress=False, faces=FAST_FACES, seed=4,
                      sources=(BuildSourceConfig(kind="csv", name="aug", root=str(folders["aug"] / "pairs.csv")),
                               BuildSourceConfig(kind="csv", name="plain", augment=False,
                                            root=str(folders["plain"] / "pairs.csv"))),
                      augment=BuildAugmentConfig(augment_fraction=1.0, distraction_fraction=1.0,
                                            augmentations=("noise",)))
    build_mri_df(cfg, log=lambda _l: None, detector=detector)
    out = tmp_path / "out"
    assert [p.name.split("__")[0] for p in (out / "plans").glob("*.json")] == ["aug"]
    rows = read_manifest(out)
    by_source = {s: {r["augmentation"] for r in rows if r["source"] == s} for s in ("aug", "plain")}
    assert by_source["plain"] == {"none"} and by_source["aug"] != {"none"}
    plain_real = next(r for r in rows if r["source"] == "plain" and r["label"] == "real")
    aug_real = next(r for r in rows if r["source"] == "aug" and r["label"] == "real")
    assert not np.array_equal(read_image(out / plain_real["image"]), read_image(out / aug_real["image"]))
