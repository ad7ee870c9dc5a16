"""Held-out figures of one or more generators on a finished ``mrigan benchmark`` run, each
beside the all-black and the mean-map baselines (issue 21 goals 3-4, and the "ship only if it
beats the current default on every held-out figure" comparison).

For every generator (the run's own export, the shipped default, any other file):

* ``test``: on the test groups' held-out MRI-DF (true MRIs from their originals; read by no
  training stage): fake SSIM, pixel AUC against the true-MRI mask (> 0.1), face AUC
  (:mod:`mrigan.localization` via :func:`mrigan.app.benchmark.gan_sweep.localization`);
* ``ff_examples``: on the FaceForensics++ example frames (``ff_examples/``: a fake and its
  ground-truth manipulation mask, no MRI), the pixel AUC of the predicted MRI against the mask
  inside the face crop (:func:`example_faces`, :func:`mask_auc`);
* ``video``: the mean-MRI verdict on the run's face sets (test groups' videos and the
  ``--labelled`` videos), its rule chosen on the validation groups' videos
  (:func:`mrigan.app.benchmark.generator_score.mri_mean_stage`, the benchmark's own stage), the
  video AUC with its bootstrap 95% interval, and the threshold-free AUC of each video's mean
  face score.

Baselines: the all-black map and the mean map (mean true MRI of the run's training fakes).
At video level both are constant maps: every face gets one score, so their AUC is 0.5.
Nothing here chooses anything from a test figure.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from datasets_builders.face_boxes import crop_face
from datasets_builders.faces import FaceDetectionConfig
from mrigan.app.benchmark import gan_sweep, generator_score
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.generator_score import video_mean_auc
from mrigan.app.benchmark.stages import STAGE_FILE, BenchmarkError
from mrigan.config import load_config
from mrigan.fileio import read_image
from mrigan.gan_trainer import training_mean_map
from mrigan.inference import MRIGenerator
from mrigan.localization import roc_auc
from mrigan.mri_df_format import MriDfDataset

_log = logging.getLogger(__name__)

#: the FF++ example fakes with a ground-truth mask (``ex_<name>.png``, ``ex_<name>_mask.png``)
EXAMPLES = ("deepfakes", "neuraltextures")


def mask_auc(maps: np.ndarray, masks: np.ndarray) -> float:
    """ROC AUC of predicted MRI values (``(..., H, W, C)`` or ``(..., H, W)``: mean over C)
    against boolean masks ``(..., H, W)`` over every pixel; a constant map scores 0.5."""
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if maps.ndim == masks.ndim + 1:
        maps = maps.mean(-1)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ")
    return roc_auc(masks.ravel(), maps.ravel())


def example_faces(examples_dir: str | Path, size: int,
                  faces: FaceDetectionConfig | None = None) -> dict[str, dict]:
    """The FF++ example fakes as face crops: MTCNN's best box on the original frame, the same
    square crop (the builders' margin) cut from each fake and its mask, resized to ``size``.
    ``{name: {"face": uint8 (S, S, 3), "mask": bool (S, S)}}``; the mask is a pixel whose
    area-resized mask value is over half."""
    root = Path(examples_dir)
    faces = faces or FaceDetectionConfig(device="cpu")
    original = read_image(root / "ex_original.png")
    boxes = faces.detector().detect([original])[0]
    if not boxes:
        raise BenchmarkError("no face found in the example frame", root / "ex_original.png")
    out = {}
    for name in EXAMPLES:
        fake = read_image(root / f"ex_{name}.png")
        mask = read_image(root / f"ex_{name}_mask.png")
        if fake.shape != original.shape or mask.shape[:2] != original.shape[:2]:
            raise BenchmarkError("example frame, fake and mask differ in size",
                                 root / f"ex_{name}.png")
        m = crop_face(mask.max(-1, keepdims=True).repeat(3, -1), boxes[0], faces.margin, size)
        out[name] = {"face": crop_face(fake, boxes[0], faces.margin, size),
                     "mask": m.max(-1) > 127}
    return out


def example_figures(predict: Callable[[list[np.ndarray]], Sequence[np.ndarray]],
                    examples: dict[str, dict]) -> dict[str, float]:
    """Pixel AUC of ``predict``'s maps of the example faces against their masks."""
    maps = predict([e["face"] for e in examples.values()])
    return {name: mask_auc(m, e["mask"]) for m, (name, e) in
            zip(maps, examples.items(), strict=True)}


def _record(run: Path, stage: str) -> dict:
    path = run / stage / STAGE_FILE
    if not path.is_file():
        raise BenchmarkError(f"no finished {stage!r} stage in this benchmark run", path)
    rec = json.loads(path.read_text(encoding="utf-8"))
    if not rec.get("done"):
        raise BenchmarkError(f"stage {stage!r} is not finished", path)
    return rec["result"]


def generator_figures(run: str | Path, generators: dict[str, str], out: str | Path,
                      examples_dir: str | Path | None = None, log=_log.info) -> dict:
    """Every figure of the module docstring for each named generator file, and the baselines,
    on the benchmark run ``run`` (its split, MRI-DFs and face sets); per-generator video
    predictions go under ``out/<name>/``."""
    run, out = Path(run), Path(out)
    cfg = load_config(BenchmarkConfig, run / "config.yaml")
    mri_df, heldout = _record(run, "mri_df"), _record(run, "heldout_mri_df")
    validation = _record(run, "faces_validation")
    tests = {k: _record(run, f"faces_{k}") for k in ("test", "labelled")
             if (run / f"faces_{k}" / STAGE_FILE).is_file()}
    batch = cfg.evaluate.batch_size
    size = cfg.data.size  # every generator scored on the crops' own size (SSIM depends on it)
    mean_map = training_mean_map(MriDfDataset(mri_df["root"], "train", size))
    result: dict = {"run": str(run), "size": size, "generators": {}, "baselines": {}}
    examples = example_faces(examples_dir, size) if examples_dir else {}
    if examples:
        mm = mean_map.permute(1, 2, 0).numpy()
        result["baselines"]["ff_examples"] = {
            "black": {n: mask_auc(np.zeros(e["mask"].shape), e["mask"])
                      for n, e in examples.items()},
            "mean_map": {n: mask_auc(mm, e["mask"]) for n, e in examples.items()}}
    for name, path in generators.items():
        gen = MRIGenerator.load(path, device="cpu", batch_size=batch)
        held = gan_sweep.predict_set(gen, heldout["root"], None, batch, size=size)
        loc = gan_sweep.localization(held, mean_map, 0.1)
        figs: dict = {"file": str(path), "image_size": gen.image_size,
                      "test": {k: loc[k] for k in ("n", "n_fake", "n_real", "identities",
                                                   "fake_ssim", "pixel_auc", "face_auc",
                                                   "pred_mean_fake", "true_mean_fake")}}
        result["baselines"]["test"] = {
            b: {k: loc[f"{b}_{k}"] for k in ("fake_ssim", "pixel_auc", "face_auc")}
            for b in ("black", "mean_map")}
        if examples:
            figs["ff_examples"] = example_figures(gen.predict, examples)
        folder = out / name
        scored = generator_score.mri_mean_stage(cfg, path, validation, tests, folder, log=log)
        figs["video"] = {"rule": scored["aggregation"]["description"],
                         "validation_value": scored["aggregation"]["validation_value"]}
        for set_name, t in scored["test_sets"].items():
            faces_csv = Path(t["predictions"]).with_name(f"{set_name}_faces.csv")
            v = t["video"]
            figs["video"][set_name] = {
                "videos": t["videos"], "fake_videos": v["n_fake"], "faces": t["faces"],
                "auc": v["auc"], "auc_ci95": t["ci95"]["auc"], "accuracy": v["accuracy"],
                "accuracy_ci95": t["ci95"]["accuracy"], "frame_auc": t["frame_auc"],
                "mean_mri": video_mean_auc(faces_csv, cfg.evaluate.bootstrap)}
        result["generators"][name] = figs
        log(f"{name}: test fake SSIM {loc['fake_ssim']:.3f}, pixel AUC {loc['pixel_auc']:.3f}")
    return result


def _f(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _ci(ci) -> str:
    return f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else ""


def markdown(res: dict) -> str:
    """The comparison tables: localization (test groups, FF++ examples) and video level."""
    gens = res["generators"]
    first = next(iter(gens.values()))
    t = first["test"]
    lines = [f"Test groups ({', '.join(t['identities'])}): {t['n_fake']} fake and "
             f"{t['n_real']} real faces (held-out MRI-DF), every map scored at "
             f"{res['size']} px (the crops' size).", "",
             "| map | test fake SSIM | test pixel AUC | test face AUC | "
             + " | ".join(f"ff_examples {n} pixel AUC" for n in EXAMPLES) + " |",
             "| :--- | ---: | ---: | ---: |" + " ---: |" * len(EXAMPLES)]
    base_test = res["baselines"].get("test", {})
    base_ex = res["baselines"].get("ff_examples", {})
    for b, label in (("black", "*all-black*"), ("mean_map", "*mean training MRI*")):
        if b in base_test:
            bt = base_test[b]
            lines.append(f"| {label} | {_f(bt['fake_ssim'])} | {_f(bt['pixel_auc'])} | "
                         f"{_f(bt['face_auc'])} | " + " | ".join(
                             _f(base_ex.get(b, {}).get(n)) for n in EXAMPLES) + " |")
    for name, g in gens.items():
        gt = g["test"]
        lines.append(f"| {name} ({g['image_size']} px) | {_f(gt['fake_ssim'])} | "
                     f"{_f(gt['pixel_auc'])} | {_f(gt['face_auc'])} | " + " | ".join(
                         _f(g.get("ff_examples", {}).get(n)) for n in EXAMPLES) + " |")
    sets = [s for s in ("test", "labelled") if s in first["video"]]
    lines += ["", "Video level (mean-MRI verdict, rule chosen on the validation groups' videos; "
              "constant maps: AUC 0.5):", "",
              "| generator | " + " | ".join(
                  f"{s}: videos (fake) | {s}: verdict AUC | {s}: mean-MRI AUC | {s}: accuracy"
                  for s in sets) + " |",
              "| :--- |" + " ---: | ---: | ---: | ---: |" * len(sets)]
    for name, g in gens.items():
        cells = []
        for s in sets:
            v = g["video"][s]
            cells += [f"{v['videos']} ({v['fake_videos']})", _f(v["auc"]) + _ci(v["auc_ci95"]),
                      _f(v["mean_mri"]["auc"]) + _ci(v["mean_mri"]["ci95"]),
                      _f(v["accuracy"]) + _ci(v["accuracy_ci95"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def beats(res: dict, candidate: str, incumbent: str) -> dict[str, bool]:
    """Per held-out figure: does ``candidate`` score higher than ``incumbent``?"""
    c, i = res["generators"][candidate], res["generators"][incumbent]
    out = {f"test_{k}": c["test"][k] > i["test"][k] for k in ("fake_ssim", "pixel_auc")}
    out.update({f"ff_examples_{n}": c["ff_examples"][n] > i["ff_examples"][n]
                for n in c.get("ff_examples", {})})
    for s in c["video"]:
        if isinstance(c["video"][s], dict):
            out[f"{s}_video_auc"] = (c["video"][s]["auc"] or 0) > (i["video"][s]["auc"] or 0)
    return out


__all__ = ["EXAMPLES", "beats", "example_faces", "example_figures", "generator_figures",
           "markdown", "mask_auc", "video_mean_auc"]
