"""``mrigan demo``: the whole MRI-GAN pipeline, end to end, on a CPU in a few minutes.

With no data and no download, it:

1. builds a small MRI-DF set from the two public-domain portraits that ship inside installed
   packages (scikit-image's astronaut, Eileen Collins; matplotlib's Grace Hopper): many
   "scenes" per photo (random pose, scale, position, lighting, mirror), a self-blended fake of
   each (``datasets_builders.synthetic.self_blend`` pasted back into the frame), a seeded
   augmentation plan applied identically to the real and the fake scene
   (``datasets_builders.augment``), MTCNN on the real scene, the same square crop from both,
   and ``MRI = clip(1 - SSIM(real crop, fake crop), 0, 1)``; scenes are split train/val/test;
2. trains a 64 px MRI-GAN for ``train_minutes`` (the training loop's ``max_minutes`` budget,
   keeping the checkpoint with the best held-out mean SSIM) and exports it as .safetensors;
3. measures it on the test scenes (mean SSIM of generated vs true MRIs, mean generated MRI of
   fakes vs reals) and picks the face threshold of the verdict on the validation scenes only;
4. writes short H.264 videos of unseen scenes (a moving camera; some segments fake, some real)
   and runs ``mrigan analyze`` on them: report.html, results.json, maps and overlays.

``--set data.root=PATH`` (with ``data.kind``: ffpp, dfdc, celebdf, csv, images) builds MRI-DF from
a real dataset with ``datasets_builders.build_mri_df`` instead, and analyses held-out (test, else
validation) videos of that dataset instead of the synthetic ones.

Everything goes under ``<out_dir>/<name>/`` (default ``runs/demo``), with the resolved config.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets_builders.augment import PlanRunner, make_plan, plan_label
from datasets_builders.faces import FaceDetector, crop_face, square_box
from datasets_builders.mri_df import (
    AugmentConfig,
    BuildConfig,
    FaceConfig,
    SourceConfig,
    SplitConfig,
    build_mri_df,
    plan_units,
)
from datasets_builders.synthetic import graded_params, self_blend
from detectors.aggregate import VideoScores, grid_search
from mrigan import perceptual
from mrigan.app.analysis import AnalyzeConfig, Analyzer, FacesConfig, FramesConfig, VerdictConfig
from mrigan.config import (
    add_config_arguments,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    resolve_config_path,
    save_config,
    to_dict,
)
from mrigan.fileio import atomic_save_image, atomic_write_json, read_image
from mrigan.inference import MRIGenerator, export_generator
from mrigan.losses import LossConfig
from mrigan.mri_df_format import MriDfDataset, read_manifest, write_manifest
from mrigan.train import DataConfig, GanConfig, ModelConfig, TrainConfig, replace, train_gan

DEFAULT_CONFIG = Path("configs/demo.yaml")


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SyntheticConfig:
    scenes_per_photo: int = 80  # each scene gives one real and one fake pair
    scene_size: int = 320  # side of the square synthetic frames (px)
    face_fraction: tuple[float, float] = (0.38, 0.58)  # face square side / frame side
    quality: tuple[float, float] = (0.0, 0.4)  # blend quality range (graded_params; 1 = subtle)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment_fraction: float = 0.3  # scenes given one augmentation (noise, blur, rotation, ...)
    distraction_fraction: float = 0.1  # scenes given a text/shape distraction


@dataclass(frozen=True)
class DemoDataConfig:
    root: str = ""  # a real dataset folder; empty: synthetic scenes from packaged photos
    kind: str = "ffpp"  # reader for root: ffpp | dfdc | celebdf | csv | images
    options: dict = field(default_factory=dict)  # passed to the reader
    fraction: float = 1.0  # share of the dataset's original videos used
    every: int = 30  # real data: decode every Nth frame
    max_frames: int | None = 10  # real data: frames per video
    val: float = 0.15  # real data: split fractions (grouped by identity)
    test: float = 0.15
    crop_size: int = 128  # crops and MRIs are stored at this size (training resizes)
    seed: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class DemoVideoConfig:
    frames: int = 48  # frames per synthetic video
    fps: float = 12.0
    crf: int = 16  # H.264 quality (lower = closer to lossless)
    max_videos: int = 4  # real data: held-out videos analysed ...
    every: int = 10  # ... every Nth frame of them (analyze.frames is for the short synthetic videos)
    max_frames: int | None = 30  # ... at most this many frames each


def _demo_gan() -> GanConfig:
    return GanConfig(
        name="gan",
        model=ModelConfig(image_size=64, ngf=16, ndf=16),
        loss=LossConfig(tau=1.0),  # see configs/demo.yaml: the SSIM term blackens short runs
        data=DataConfig(eval_samples=32),
        train=TrainConfig(epochs=1000, batch_size=16, max_steps=3000, device="auto",
                          precision="auto", log_every=25, eval_every=50, checkpoint_every=50))


def _demo_analyze() -> AnalyzeConfig:
    return AnalyzeConfig(name="report", frames=FramesConfig(every=2),
                         faces=FacesConfig(max_side=None), verdict=VerdictConfig(rule="count"))


@dataclass(frozen=True)
class DemoConfig:
    name: str = "demo"
    out_dir: str = "runs"
    train_minutes: float = 5.0  # GAN training time budget (stops at gan.train.max_steps too)
    calibrate_threshold: bool = True  # pick verdict.mri_threshold on validation faces
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    gan: GanConfig = field(default_factory=_demo_gan)
    video: DemoVideoConfig = field(default_factory=DemoVideoConfig)
    analyze: AnalyzeConfig = field(default_factory=_demo_analyze)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ----------------------------------------------------------------------------- synthetic scenes


@dataclass(frozen=True)
class Photo:
    name: str
    image: np.ndarray  # RGB uint8
    face: tuple[float, float, float]  # face square: centre x, centre y, side (photo pixels)


def packaged_photos(detector) -> list[Photo]:
    """The public-domain portraits shipped inside scikit-image and matplotlib, with the face
    square found by MTCNN (so no coordinates are hard-coded)."""
    import matplotlib.cbook
    from skimage import data


    photos = [("collins", data.astronaut()),
              ("hopper", read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg",
                                                                     asfileobj=False)))]
    out = []
    for name, img in photos:
        boxes = detector.detect([img])[0]
        if not boxes:
            raise RuntimeError(f"no face found in the packaged photo {name!r}")
        x0, y0, x1, y1 = square_box(boxes[0], 1.3)
        out.append(Photo(name, img, ((x0 + x1) / 2, (y0 + y1) / 2, float(x1 - x0))))
    return out


def scene_params(rng: np.random.Generator, cfg: SyntheticConfig) -> dict[str, Any]:
    """A random camera: face size and position in the frame, roll, mirror, lighting."""
    return {"face": float(rng.uniform(*cfg.face_fraction)),
            "cx": float(rng.uniform(0.38, 0.62)), "cy": float(rng.uniform(0.38, 0.62)),
            "angle": float(rng.uniform(-12, 12)), "flip": bool(rng.random() < 0.5),
            "gain": [float(g) for g in rng.uniform(0.85, 1.15, size=3)],
            "offset": float(rng.uniform(-12, 12))}


def render_scene(photo: Photo, p: dict[str, Any], size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The frame a camera with parameters ``p`` sees, and the face square in it."""
    import cv2

    img = photo.image
    cx, cy, side = photo.face
    if p["flip"]:
        img, cx = img[:, ::-1], img.shape[1] - 1 - cx
    scale = p["face"] * size / side
    m = cv2.getRotationMatrix2D((cx, cy), p["angle"], scale)
    tx, ty = p["cx"] * size, p["cy"] * size
    m[:, 2] += (tx - cx, ty - cy)
    frame = cv2.warpAffine(np.ascontiguousarray(img), m, (size, size), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_REFLECT)
    frame = frame.astype(np.float32) * np.asarray(p["gain"], np.float32) + p["offset"]
    half = p["face"] * size / 2
    square = (int(round(tx - half)), int(round(ty - half)), int(round(tx + half)), int(round(ty + half)))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8), square


def blend_into(frame: np.ndarray, square: tuple[int, int, int, int], seed: int,
               quality: tuple[float, float] = (0.0, 0.4)) -> np.ndarray:
    """A fake frame: the face square self-blended (a jittered copy through a soft, deformed face
    mask) with artefacts of a quality drawn in ``quality`` (``graded_params``: 0 crude, 1 subtle)."""

    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(square[0], 0), max(square[1], 0), min(square[2], w), min(square[3], h)
    rng = np.random.default_rng(seed)
    params = graded_params(float(rng.uniform(*quality)), rng)
    fake = frame.copy()
    fake[y0:y1, x0:x1] = self_blend(frame[y0:y1, x0:x1], rng, params).fake
    return fake


def build_synthetic_mri_df(cfg: DemoConfig, root: Path, detector, photos: list[Photo],
                           log=print) -> dict[str, int]:
    """MRI-DF (manifest.csv + PNGs) from scenes of the packaged photos; returns counts."""

    sc, dc = cfg.data.synthetic, cfg.data
    rng = np.random.default_rng([dc.seed, 1])
    size = dc.crop_size
    black = "mri/black.png"
    atomic_save_image(root / black, np.zeros((size, size, 3), np.uint8))
    rows: list[dict[str, Any]] = []
    counts = {"scenes": 0, "no_face": 0}
    jobs = []
    for photo in photos:
        for k in range(sc.scenes_per_photo):
            u = rng.random()
            split = "test" if u < sc.test_fraction else "val" if u < sc.test_fraction + sc.val_fraction else "train"
            jobs.append((photo, k, split, scene_params(rng, sc), int(rng.integers(2**31))))
    batch_size = 16
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        reals, fakes, plans = [], [], []
        for photo, k, _split, params, seed in chunk:
            real, square = render_scene(photo, params, sc.scene_size)
            fake = blend_into(real, square, seed, sc.quality)
            plan = make_plan(dc.seed, f"{photo.name}_{k:03d}", augment_fraction=sc.augment_fraction,
                             distraction_fraction=sc.distraction_fraction)
            run = PlanRunner(plan)  # the same augmentation on the real and on the fake scene
            reals.append(run(real, 0))
            fakes.append(run(fake, 0))
            plans.append(plan)
        for (photo, k, split, _params, _seed), real, fake, plan, boxes in zip(
                chunk, reals, fakes, plans, detector.detect(reals), strict=True):
            counts["scenes"] += 1
            if not boxes:
                counts["no_face"] += 1
                continue
            real_crop = crop_face(real, boxes[0], cfg.analyze.faces.margin, size)
            fake_crop = crop_face(fake, boxes[0], cfg.analyze.faces.margin, size)
            mri = perceptual.mri_map_np(real_crop, fake_crop)
            sid = f"{photo.name}_{k:03d}"
            common = {"split": split, "identity": photo.name, "source": "demo", "frame": 0,
                      "track": 0, "augmentation": plan_label(plan)}
            atomic_save_image(root / f"face/{sid}_real.png", real_crop)
            atomic_save_image(root / f"face/{sid}_fake.png", fake_crop)
            atomic_save_image(root / f"mri/{sid}_fake.png", perceptual.mri_to_uint8(mri))
            rows.append({"image": f"face/{sid}_real.png", "mri": black, "label": "real",
                         "video": f"{sid}_real", "method": "original", **common})
            rows.append({"image": f"face/{sid}_fake.png", "mri": f"mri/{sid}_fake.png",
                         "label": "fake", "video": f"{sid}_fake", "method": "self_blend", **common})
        log(f"  scenes {min(start + batch_size, len(jobs))}/{len(jobs)}", end="\r")
    log("")
    write_manifest(root, rows)
    for split in ("train", "val", "test"):
        counts[f"pairs_{split}"] = sum(r["split"] == split for r in rows)
    return counts


def write_video(path: Path, frames: list[np.ndarray], fps: float, crf: int) -> Path:
    """H.264 (yuv420p) MP4 with PyAV, written to a temp name then renamed."""
    import os
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    h, w = frames[0].shape[:2]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def synthetic_videos(cfg: DemoConfig, folder: Path, photos: list[Photo]) -> dict[str, list[bool]]:
    """Short videos of unseen scenes (a camera moving between two random views); returns the
    ground truth: for each video, whether each frame is fake."""
    photos = {p.name: p for p in photos}
    n = cfg.video.frames
    third = n // 3
    plan = {  # (photo, fake frames)
        "collins_fake_middle.mp4": ("collins", [third <= i < 2 * third for i in range(n)]),
        "hopper_real.mp4": ("hopper", [False] * n),
        "hopper_fake.mp4": ("hopper", [True] * n),
    }
    rng = np.random.default_rng([cfg.data.seed, 99])  # a stream never used for training scenes
    truth = {}
    for name, (photo, fake_at) in plan.items():
        a, b = scene_params(rng, cfg.data.synthetic), scene_params(rng, cfg.data.synthetic)
        b["flip"] = a["flip"]
        blend_seed = int(rng.integers(2**31))
        frames = []
        for i in range(n):
            t = i / max(n - 1, 1)
            p = {k: (a[k] if k == "flip" else
                     [x + t * (y - x) for x, y in zip(a[k], b[k], strict=True)] if isinstance(a[k], list)
                     else a[k] + t * (b[k] - a[k])) for k in a}
            frame, square = render_scene(photos[photo], p, cfg.data.synthetic.scene_size)
            frames.append(blend_into(frame, square, blend_seed, cfg.data.synthetic.quality)
                          if fake_at[i] else frame)
        write_video(folder / name, frames, cfg.video.fps, cfg.video.crf)
        truth[name] = fake_at
    atomic_write_json(folder / "truth.json", truth)
    return truth


# ----------------------------------------------------------------------------- real data


def _build_config(cfg: DemoConfig, root: Path):

    dc, sc = cfg.data, cfg.data.synthetic
    fc = cfg.analyze.faces
    return BuildConfig(
        out=str(root), every=dc.every, max_frames=dc.max_frames, seed=dc.seed,
        sources=(SourceConfig(kind=dc.kind, root=dc.root, fraction=dc.fraction,
                              options=dict(dc.options)),),
        faces=FaceConfig(device=cfg.analyze.device, thresholds=fc.thresholds,
                         min_face_size=fc.min_face_size, margin=fc.margin, size=dc.crop_size),
        augment=AugmentConfig(augment_fraction=sc.augment_fraction,
                              distraction_fraction=sc.distraction_fraction),
        split=SplitConfig(val=dc.val, test=dc.test))


def held_out_videos(cfg: DemoConfig, build_cfg) -> tuple[list[Path], dict[str, bool], str]:
    """Up to ``video.max_videos`` videos of the test split (else val), reals and fakes mixed."""

    units = plan_units(build_cfg).units
    for split in ("test", "val", "train"):
        chosen = [u for u in units if u.split == split]
        if chosen:
            break
    reals = [u.original.path for u in chosen]
    fakes = [f.path for u in chosen for f in u.fakes]
    picked: list[Path] = []
    while (reals or fakes) and len(picked) < cfg.video.max_videos:
        for pool in (fakes, reals):
            if pool and len(picked) < cfg.video.max_videos:
                picked.append(pool.pop(0))
    fake_paths = {f.path for u in chosen for f in u.fakes}
    return picked, {str(p): p in fake_paths for p in picked}, split


# ----------------------------------------------------------------------------- training


def train_for(gan_cfg: GanConfig, minutes: float, log=print):
    """Train until ``minutes`` (the loop's ``train.max_minutes`` budget) or ``max_steps``; the
    best held-out checkpoint is kept by the trainer."""

    t_start = time.monotonic()
    result = train_gan(replace(gan_cfg, train={"max_minutes": minutes}))
    ev = result.last_eval
    log(f"  step {result.step}: held-out mean SSIM {ev.get('mean_ssim', math.nan):.3f}, mean MRI "
        f"fake {ev.get('mri_mean_fake', math.nan):.3f} / real {ev.get('mri_mean_real', math.nan):.3f}"
        f" ({time.monotonic() - t_start:.0f} s)")
    return result


def generator_figures(gen, root: Path, split: str) -> dict[str, float]:
    """Mean SSIM of generated vs true MRIs (data range 1) and mean generated MRI of fakes and
    reals, over every pair of ``split``."""
    import torch


    ds = MriDfDataset(root, split, gen.image_size)
    items = [ds[i] for i in range(len(ds))]
    faces = torch.stack([it["image"] for it in items])
    true = torch.stack([it["mri"] for it in items])
    labels = torch.tensor([it["label"] for it in items])
    pred = gen.predict_tensor(faces).cpu()
    ssim = perceptual.mean_ssim(pred, true, data_range=1.0)
    per_face = pred.flatten(1).mean(1)
    return {"split": split, "pairs": len(items), "mean_ssim": float(ssim.mean()),
            "mri_mean_fake": float(per_face[labels == 1].mean()),
            "mri_mean_real": float(per_face[labels == 0].mean()),
            "scores": per_face.tolist(), "labels": labels.tolist()}


def calibrate_mri_threshold(scores: list[float], labels: list[int], fraction: float,
                            rule: str) -> tuple[float, float]:
    """The face threshold on mean MRI that best separates validation fakes from reals
    (balanced accuracy, ``detectors.aggregate.grid_search``, one face per unit)."""

    units = [VideoScores(f"val{i}", int(y), np.asarray([s])) for i, (s, y) in
             enumerate(zip(scores, labels, strict=True))]
    grid = np.round(np.linspace(0.002, 0.3, 150), 4)
    found = grid_search(rule, units, thresholds=tuple(grid), fractions=(fraction,))
    return float(found.params["threshold"]), float(found.value)


# ----------------------------------------------------------------------------- the command


def load_demo_config(path: str | None = None, overrides: list[str] | None = None) -> DemoConfig:
    """``DemoConfig()`` <- YAML (default ``configs/demo.yaml`` when present) <- ``--set``.

    Merged as dictionaries over the demo's own defaults, so ``--set gan.train.max_steps=10``
    changes one field and keeps the demo's 64 px GAN (the generic loader would rebuild the
    ``gan`` section from ``GanConfig``'s paper defaults).
    """
    if path is None and resolve_config_path(DEFAULT_CONFIG).is_file():
        path = str(resolve_config_path(DEFAULT_CONFIG))
    data = to_dict(DemoConfig())
    if path:
        data = deep_merge(data, read_yaml(path))
    data = deep_merge(data, parse_overrides(overrides))
    return from_dict(DemoConfig, data, where=path or "DemoConfig")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: <out_dir>/<name>, i.e. runs/demo)")


def _log(*args: Any, **kwargs: Any) -> None:
    print(*args, **kwargs, flush=True)


def run(args: argparse.Namespace) -> int:

    cfg = load_demo_config(args.config, args.overrides)
    run_dir = args.out or cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    t0 = time.monotonic()
    fc = cfg.analyze.faces
    detector = FaceDetector(device=cfg.analyze.device, thresholds=fc.thresholds,
                            min_face_size=fc.min_face_size, max_side=fc.max_side,
                            batch_size=fc.detect_batch)
    data_root, photos, build_cfg = _build_data(cfg, run_dir / "data", detector)
    weights, trained = _train_and_export(cfg, run_dir, data_root)
    gen = MRIGenerator.load(weights, device=cfg.analyze.device)
    _log(f"[3/4] held-out figures of {weights} (step {trained.best_step})")
    test, analyze_cfg, calibration = _held_out_figures(cfg, gen, data_root)

    _log("[4/4] analysing held-out videos")
    if photos is not None:
        truth = synthetic_videos(cfg, run_dir / "videos", photos)
        videos = [run_dir / "videos" / name for name in truth]
        held_from = "unseen synthetic scenes"
    else:
        videos, is_fake, split = held_out_videos(cfg, build_cfg)
        truth = {str(v): is_fake[str(v)] for v in videos}
        held_from = f"the {split} split"
        analyze_cfg = dataclasses.replace(analyze_cfg, frames=FramesConfig(
            every=cfg.video.every, max_frames=cfg.video.max_frames))
    report_dir = run_dir / "report"
    analyzer = Analyzer(weights, None, analyze_cfg, face_detector=detector)  # path: provenance
    results = analyzer.run(videos, report_dir, progress=sys.stderr.isatty())
    video_means = _video_truth_means(results, truth, synthetic=photos is not None)

    summary = {
        "data": cfg.data.root or "synthetic",
        "generator": str(weights), "best_step": trained.best_step, "steps": trained.step,
        "held_out_split": test["split"], "held_out_pairs": test["pairs"],
        "held_out_mean_ssim": test["mean_ssim"],
        "held_out_mri_mean_fake": test["mri_mean_fake"],
        "held_out_mri_mean_real": test["mri_mean_real"],
        "calibration": calibration,
        "videos_from": held_from,
        "video_faces_mri_mean_fake": video_means["fake"],
        "video_faces_mri_mean_real": video_means["real"],
        "verdicts": {Path(r.path).name: (r.verdict.label if r.verdict else r.status)
                     for r in results.inputs},
        "truth": {Path(k).name: (any(v) if isinstance(v, list) else bool(v))
                  for k, v in truth.items()},
        "report": str(report_dir / "report.html"),
        "seconds": round(time.monotonic() - t0, 1),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    _print_summary(summary)
    return 0 if results.analysed else 1


def _build_data(cfg: DemoConfig, data_root: Path, detector):
    """Step 1: MRI-DF from the packaged photos, or from ``data.root`` with the real builder.
    Returns (root, photos or None, the builder config or None)."""
    synthetic = not cfg.data.root
    _log(f"[1/4] MRI-DF from {'packaged photos (synthetic scenes)' if synthetic else cfg.data.root}"
         f" -> {data_root}")
    if not synthetic:

        build_cfg = _build_config(cfg, data_root)
        build_mri_df(build_cfg, log=_log)
        return data_root, None, build_cfg
    photos = packaged_photos(detector)
    counts = build_synthetic_mri_df(cfg, data_root, detector, photos, _log)
    _log(f"  {counts['scenes']} scenes ({counts['no_face']} without a detected face): pairs "
         f"train {counts['pairs_train']}, val {counts['pairs_val']}, test {counts['pairs_test']}")
    return data_root, photos, None


def _train_and_export(cfg: DemoConfig, run_dir: Path, data_root: Path):
    """Step 2: train within the time budget; export the best held-out checkpoint."""

    gan_cfg = replace(cfg.gan, name="gan", out_dir=str(run_dir), data={"root": str(data_root)})
    _log(f"[2/4] training a {gan_cfg.model.image_size} px MRI-GAN for up to {cfg.train_minutes:g} "
         f"min -> {gan_cfg.run_dir}")
    result = train_for(gan_cfg, cfg.train_minutes, _log)
    best = result.best_checkpoint or result.last_checkpoint
    weights, _sidecar = export_generator(best, run_dir / "generator.safetensors")
    return weights, result


def _held_out_figures(cfg: DemoConfig, gen, data_root: Path):
    """Step 3: figures on the test split (else val); the verdict's face threshold on val only."""

    splits = {r["split"] for r in read_manifest(data_root)}
    test = generator_figures(gen, data_root, "test" if "test" in splits else "val")
    analyze_cfg, calibration = cfg.analyze, None
    if cfg.calibrate_threshold and "val" in splits:
        val = generator_figures(gen, data_root, "val")
        if len(set(val["labels"])) == 2:
            verdict = analyze_cfg.verdict
            thr, bacc = calibrate_mri_threshold(val["scores"], val["labels"],
                                                verdict.fake_fraction, verdict.rule)
            analyze_cfg = dataclasses.replace(
                analyze_cfg, verdict=dataclasses.replace(verdict, mri_threshold=thr))
            calibration = {"mri_threshold": thr, "val_balanced_accuracy": bacc,
                           "val_pairs": val["pairs"]}
            _log(f"  verdict face threshold (mean MRI) {thr:.4f}, chosen on {val['pairs']} "
                 f"validation faces (balanced accuracy {bacc:.3f})")
    return test, analyze_cfg, calibration


def _print_summary(summary: dict[str, Any]) -> None:
    for name, label in summary["verdicts"].items():
        really = "fake" if summary["truth"].get(name) else "real"
        _log(f"  {name}: {label.upper()} (truth: {really})")
    _log(f"report: {summary['report']}")
    fake, real = summary["video_faces_mri_mean_fake"], summary["video_faces_mri_mean_real"]
    _log(f"held-out MRI SSIM {summary['held_out_mean_ssim']:.3f} on {summary['held_out_pairs']} "
         f"{summary['held_out_split']} faces; mean MRI fake {summary['held_out_mri_mean_fake']:.3f}"
         f" vs real {summary['held_out_mri_mean_real']:.3f}"
         + (f"; video faces fake {fake:.3f} vs real {real:.3f}"
            if fake is not None and real is not None else "")
         + f"; {summary['seconds']:.0f} s")


def _video_truth_means(results, truth: dict, synthetic: bool) -> dict[str, float | None]:
    """Mean face MRI over the analysed videos' faces, grouped by ground truth."""
    sums: dict[str, list[float]] = {"fake": [], "real": []}
    for r in results.analysed:
        key = Path(r.path).name if synthetic else r.path
        t = truth.get(key)
        for f in r.face_results():
            fake = t[f.frame] if isinstance(t, list) else bool(t)
            sums["fake" if fake else "real"].append(f.mri["mean"])
    return {k: (float(np.mean(v)) if v else None) for k, v in sums.items()}


