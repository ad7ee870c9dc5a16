"""``ship_generator(run_dir, out)``: a finished benchmark run's generator as shipped weights
(fp16 safetensors) with a model card built from that run's own figures.

Every figure in the card comes from the run's stage records and ``report/benchmark.json``:
the generator never saw the held-out (test) identity, nor the ``--labelled`` videos; the
validation identity chose its best checkpoint and the verdict threshold. Nothing here
trains or measures anew except :func:`heldout_checks` (the fp16 weights vs the fp32 export
the figures were measured with, and mean predicted vs true MRI, on held-out faces).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.generator_score import video_mean_auc
from mrigan.app.benchmark.stages import STAGE_FILE, BenchmarkError
from mrigan.config import load_config
from mrigan.gan_trainer import training_mean_map
from mrigan.inference import MRIGenerator, export_generator
from mrigan.localization import localization_figures
from mrigan.model_card import CARD_FORMAT, MIN_AUC, MIN_VIDEOS, RULE, tells_real_from_fake
from mrigan.models import ENCODER_GENERATORS
from mrigan.mri_df_format import MriDfDataset
from mrigan.perceptual import DEFAULT_METRIC
from mrigan.train import GanConfig

#: the repository's limit for the shipped weights
MAX_BYTES = 10 * 1024 * 1024


def _record(run_dir: Path, stage: str) -> dict:
    path = run_dir / stage / STAGE_FILE
    if not path.is_file():
        raise BenchmarkError(f"no finished {stage!r} stage: run `mrigan benchmark` to the end "
                             "first", path)
    record = json.loads(path.read_text(encoding="utf-8"))
    if not record.get("done"):
        raise BenchmarkError(f"stage {stage!r} is not finished", path)
    return record["result"]


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _ci(ci):
    return None if not ci else [_num(c) for c in ci]


def _datasets(pairs_csv: str, identities: set[str]) -> list[str]:
    if not pairs_csv or not Path(pairs_csv).is_file():
        return []
    with open(pairs_csv, newline="", encoding="utf-8") as fh:
        return sorted({f"{r.get('dataset', '')}: {r.get('method', '')}" for r in csv.DictReader(fh)
                       if r.get("identity") in identities and r.get("label") == "fake"})


def _threshold_free(faces_csv: Path) -> dict:
    """AUC (bootstrap 95% CI) of each video's mean face score: how well the generator's mean
    MRI ranks the videos with no threshold at all (the verdict's AUC depends on the chosen
    face threshold)."""
    if not faces_csv.is_file():
        return {}
    got = video_mean_auc(faces_csv)
    return {"auc_video_mean_mri": _num(got["auc"]), "auc_video_mean_mri_ci95": _ci(got["ci95"])}


def _encoder_source(run_dir: Path) -> dict | None:
    """Where the generator's encoder weights came from (package, version, file, SHA-256), as
    the run's export recorded it; None for the paper's U-Net or an unfinished export."""
    try:
        sidecar = Path(_record(run_dir, "export")["sidecar"])
    except (BenchmarkError, KeyError):
        return None
    if not sidecar.is_file():
        return None
    return json.loads(sidecar.read_text(encoding="utf-8")).get("architecture", {}).get(
        "encoder_source")


def build_card(run_dir: Path, checks: dict | None = None) -> dict:
    """The model card of a finished ``mrigan benchmark`` run's exported generator."""
    bench_json = run_dir / "report" / "benchmark.json"
    if not bench_json.is_file():
        raise BenchmarkError("no report/benchmark.json: run `mrigan benchmark` to the end first",
                             bench_json)
    summary = json.loads(bench_json.read_text(encoding="utf-8"))
    if "mri_mean" not in summary.get("evaluations", {}):
        raise BenchmarkError("this run has no mri_mean evaluation (made by an older version); "
                             "rerun `mrigan benchmark` on it with --restart", bench_json)
    gan, mri_df = _record(run_dir, "gan"), _record(run_dir, "mri_df")
    gcfg = load_config(GanConfig, run_dir / "gan" / "run" / "config.yaml")
    splits, q = summary["splits"], summary["gan_quality"]
    mm = _record(run_dir, "eval_mri_mean")
    bench_cfg = load_config(BenchmarkConfig, run_dir / "config.yaml")
    train_ids = set(splits["train"]["identities"])
    video_level = {}
    for name, t in mm["test_sets"].items():
        row = next(r for r in summary["table"] if r["test_set"] == name
                   and r["detector"] == "mri_mean")
        video_level[name] = {
            "videos": t["videos"], "fake_videos": row["fake_videos"],
            "real_videos": row["real_videos"], "identities": row["identities"],
            "auc": _num(row["auc"]), "auc_ci95": _ci(row["ci95"].get("auc")),
            "accuracy": _num(row["accuracy"]), "accuracy_ci95": _ci(row["ci95"].get("accuracy")),
            "eer": _num(row["eer"]), "faces": t["faces"],
            **_threshold_free(Path(t["predictions"]).with_name(f"{name}_faces.csv"))}
    size, ngf = gcfg.model.image_size, gcfg.model.ngf
    n_ids = len(splits["train"]["identities"])
    rows = mri_df["splits"]
    card = {
        "format": CARD_FORMAT,
        "training_data": {
            "train_identities": splits["train"]["identities"],
            "validation_identities": splits["val"]["identities"],
            "validation_use": f"best checkpoint (train.select_by: {gcfg.train.select_by}) and "
                              "the verdict threshold",
            "held_out_identities": splits["test"]["identities"],
            "videos": {"train": len(splits["train"]["videos"]),
                       "validation": len(splits["val"]["videos"])},
            "faces": {k: {"pairs": v["rows"], "fake": v["fake_rows"]} for k, v in rows.items()},
            "datasets": _datasets(bench_cfg.pairs, train_ids),
            "labelled_test_videos": summary["face_sets"].get("labelled", {}).get("videos", 0)},
        "settings": {"image_size": size, "ngf": ngf, "ndf": gcfg.model.ndf,
                     "tau": gcfg.loss.tau, "lambda_recon": gcfg.loss.lambda_recon,
                     "pixel_loss": gcfg.loss.pixel, "batch_size": gcfg.train.batch_size,
                     "steps": gan["step"], "checkpoint_step": gan["best_step"],
                     "checkpoint": gan["used"], "device": gcfg.train.device,
                     "precision": gan.get("precision", gcfg.train.precision),
                     "weights_dtype": "float16",
                     "fp16_max_mri_difference": (checks or {}).get("fp16_max_mri_difference"),
                     "generator": gcfg.model.generator,
                     "encoder_weights": _encoder_source(run_dir),
                     # the perceptual metric of the MRIs it learned (ssim: the paper's MRI)
                     "mri_metric": gcfg.data.mri_metric},
        "departures_from_paper": [
            f"{size} px faces instead of 256; generator/discriminator width {ngf}/"
            f"{gcfg.model.ndf} instead of 64 (a small network that fits in 10 MB as fp16).",
            f"{gan['step']} steps of batch {gcfg.train.batch_size} on a CPU instead of many "
            "epochs of batch 128 on GPUs.",
            f"{n_ids} training identity groups (FF++ pairs; a group holds the people of reciprocal "
            "swaps) instead of DFDC's thousands of videos.",
            "Weights stored in fp16 (cast back to fp32 when loaded).",
            f"tau {gcfg.loss.tau} and lambda {gcfg.loss.lambda_recon} are the paper's.",
            *([f"Generator {gcfg.model.generator}: a U-Net on an ImageNet-pretrained encoder "
               "with a light decoder, not the paper's U-Net."]
              if gcfg.model.generator in ENCODER_GENERATORS else [])],
        "held_out": {
            "identities": q["identities"], "videos": q["videos"],
            "mean_ssim": {lab: {"n": q[lab]["n"], "generator": _num(q[lab]["mean_ssim"]),
                                "all_black": _num(q[lab]["mean_ssim_black"])}
                          for lab in ("fake", "real")},
            "mean_mri": (checks or {}).get("mean_mri"),
            "localization": (checks or {}).get("localization"),
            "what": "mean SSIM of the predicted vs the true MRI on faces of the held-out "
                    "identity (true MRIs from its original video); an all-black map scores ~1 "
                    "on real faces, so only the fake row shows whether the generator is useful"},
        "video_level": video_level,
        "verdict": {"rule": mm["aggregation"]["rule"],
                    "mri_threshold": float(mm["aggregation"]["params"]["threshold"]),
                    "fake_fraction": float(mm["aggregation"]["params"].get("fraction", 0.3)),
                    "chosen_on": f"{mm['aggregation']['objective']} on the validation "
                                 f"identities' {mm['validation_videos']} videos "
                                 f"({', '.join(splits['val']['identities'])})",
                    "validation_value": _num(mm["aggregation"]["validation_value"])},
        "tells_real_from_fake_rule": RULE,
    }
    ok = tells_real_from_fake(card)
    if gcfg.data.mri_metric != DEFAULT_METRIC:
        card["departures_from_paper"].append(
            f"MRIs are {gcfg.data.mri_metric} maps (mrigan.perceptual), not clip(1 - SSIM).")
    card["tells_real_from_fake"] = ok
    card["summary"] = (
        f"MRI-GAN generator, {size} px, width {ngf}, trained on a CPU on {n_ids} "
        f"FaceForensics++ identity groups; on videos of people it never saw it "
        + ("separates real from fake" if ok else "does NOT reliably tell real from fake")
        + " (video-level AUC of its mean MRI: "
        + ", ".join(f"{k} {v['auc']} on {v['videos']} videos" for k, v in video_level.items())
        + ").")
    card["limits"] = [
        f"Trained on {n_ids} FaceForensics++ identity groups ({', '.join(splits['train']['identities'])})"
        f" at {size} px on a CPU for {gan['step']} steps: a demonstration-sized model, not the "
        "paper's.",
        "Its MRI is its guess of where a face differs from an unseen original; on real faces "
        "it should be near black, and it has seen only a few kinds of manipulation "
        f"({'; '.join(card['training_data']['datasets']) or 'see training_data'}).",
        f"The held-out figures rest on {q['videos']} videos of {len(q['identities'])} identity group(s) "
        f"and {card['training_data']['labelled_test_videos']} labelled videos: wide intervals.",
        ("On held-out videos its mean-MRI verdicts " +
         ("separated real from fake" if ok else
          f"did not separate real from fake (rule: on held-out sets of at least {MIN_VIDEOS} "
          f"videos, AUC >= {MIN_AUC} with its 95% interval above 0.5)")
         + "; read its maps, not its verdicts, as the evidence."),
        "It says nothing about faces much smaller than the crop size, other compressions, "
        "or manipulation methods unlike the training ones."]
    if (card["verdict"]["validation_value"] or 0) <= 0.5:
        card["limits"].append(
            "Its verdict threshold separated nothing on the validation videos (best balanced "
            f"accuracy {card['verdict']['validation_value']}): the first of the tied candidates "
            "was kept, so its verdicts are a default, not a calibrated decision.")
    fake_mri = ((checks or {}).get("mean_mri") or {}).get("fake") or {}
    if fake_mri.get("predicted") is not None and fake_mri.get("true"):
        collapsed = fake_mri["predicted"] < 0.25 * fake_mri["true"]
        card["limits"].insert(1, (
            f"On held-out fake faces its MRI averages {fake_mri['predicted']:.4f} against a "
            f"true {fake_mri['true']:.4f}" + (": it is close to all-black (the collapse of "
            "short low-resolution CPU runs), so its maps show little of the manipulation."
                                             if collapsed else ".")))
    card["produced_by"] = [
        "mrigan benchmark --pairs ../shared/data/pairs/all_pairs.csv --labelled "
        "../shared/data/labelled_unpaired/labels_all.csv --preset default_generator --out RUN",
        "mrigan ship-generator RUN"]
    return card


@torch.no_grad()
def heldout_checks(run_dir: Path, fp32: str, fp16: Path) -> dict:
    """On up to 256 held-out faces (test identity, evenly spaced): the largest |MRI| difference
    between the fp16 weights and the fp32 export the figures were measured with, the mean
    predicted vs true MRI of fake and real faces (a collapsed, all-black generator shows as a
    predicted mean near 0 on fakes whose true mean is not), and the fp16 weights' localization
    figures (:func:`mrigan.localization.localization_figures`: fake SSIM, pixel AUC against the
    true-MRI mask, face AUC) beside the all-black map and the mean true MRI of the run's
    training fakes."""
    a, b = MRIGenerator.load(fp32, device="cpu"), MRIGenerator.load(fp16, device="cpu")
    heldout = _record(run_dir, "heldout_mri_df")["root"]
    data = MriDfDataset(heldout, None, a.image_size)
    idx = np.linspace(0, len(data) - 1, min(256, len(data))).astype(int)
    items = [data[int(i)] for i in idx]
    faces = torch.stack([it["image"] for it in items])
    pa, pb = a.predict_tensor(faces), b.predict_tensor(faces)
    true = torch.stack([it["mri"] for it in items])
    labels = torch.tensor([int(it["label"]) for it in items])
    means = {}
    for lab, name in ((1, "fake"), (0, "real")):
        m = labels == lab
        means[name] = {"n": int(m.sum()), "predicted": _num(pb[m].mean()) if m.any() else None,
                       "true": _num(true[m].mean()) if m.any() else None}
    mean_map = training_mean_map(MriDfDataset(_record(run_dir, "mri_df")["root"], "train",
                                              b.image_size))
    figures = localization_figures(pb, true, labels, mean_map)
    localization = {"n": len(items), **{k: _num(v) for k, v in figures.items()}}
    return {"fp16_max_mri_difference": round(float((pa - pb).abs().max()), 5),
            "mean_mri": means, "localization": localization}


def ship_generator(run_dir: str | Path, out: str | Path) -> tuple[Path, Path, dict]:
    """Export the run's generator in fp16 with its model card to ``out`` (+ sidecar)."""
    run_dir, out = Path(run_dir), Path(out)
    card = build_card(run_dir)  # checks the run is complete before anything is written
    gan, export = _record(run_dir, "gan"), _record(run_dir, "export")
    weights, sidecar = export_generator(gan["checkpoint"], out, dtype=torch.float16, card=card)
    card = build_card(run_dir, heldout_checks(run_dir, export["generator"], weights))
    weights, sidecar = export_generator(gan["checkpoint"], out, dtype=torch.float16, card=card)
    if weights.stat().st_size > MAX_BYTES:
        raise BenchmarkError(f"{weights.stat().st_size / 1e6:.1f} MB: over the repository's "
                             f"{MAX_BYTES / 2**20:.0f} MiB limit for shipped weights", weights)
    return weights, sidecar, card


__all__ = ["MAX_BYTES", "build_card", "heldout_checks", "ship_generator"]
