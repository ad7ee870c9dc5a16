"""``ship_generator(run_dir, out)``: a finished benchmark run's generator as shipped weights
(fp16 safetensors) with a model card built from that run's own figures.

Every figure in the card comes from the run's stage records and ``report/benchmark.json``:
the generator never saw the held-out (test) identity, nor the ``--labelled`` videos; the
validation identity chose its best checkpoint and the verdict threshold. Nothing here
trains or measures anew except the fp16 check (the largest MRI difference between the fp16
weights and the fp32 export the figures were measured with, on held-out faces).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.stages import STAGE_FILE, BenchmarkError
from mrigan.config import load_config
from mrigan.inference import MRIGenerator, export_generator
from mrigan.model_card import CARD_FORMAT, MIN_AUC, RULE, tells_real_from_fake
from mrigan.mri_df_format import MriDfDataset
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


def build_card(run_dir: Path, fp16_max_diff: float | None = None) -> dict:
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
            "eer": _num(row["eer"]), "faces": t["faces"]}
    size, ngf = gcfg.model.image_size, gcfg.model.ngf
    n_ids = len(splits["train"]["identities"])
    rows = mri_df["splits"]
    card = {
        "format": CARD_FORMAT,
        "training_data": {
            "train_identities": splits["train"]["identities"],
            "validation_identities": splits["val"]["identities"],
            "validation_use": "best checkpoint (held-out mean SSIM) and the verdict threshold",
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
                     "precision": gcfg.train.precision, "weights_dtype": "float16",
                     "fp16_max_mri_difference": fp16_max_diff},
        "departures_from_paper": [
            f"{size} px faces instead of 256; generator/discriminator width {ngf}/"
            f"{gcfg.model.ndf} instead of 64 (a small network that fits in 10 MB as fp16).",
            f"{gan['step']} steps of batch {gcfg.train.batch_size} on a CPU instead of many "
            "epochs of batch 128 on GPUs.",
            f"{n_ids} training people (FF++ pairs) instead of DFDC's thousands of videos.",
            "Weights stored in fp16 (cast back to fp32 when loaded).",
            f"tau {gcfg.loss.tau} and lambda {gcfg.loss.lambda_recon} are the paper's."],
        "held_out": {
            "identities": q["identities"], "videos": q["videos"],
            "mean_ssim": {lab: {"n": q[lab]["n"], "generator": _num(q[lab]["mean_ssim"]),
                                "all_black": _num(q[lab]["mean_ssim_black"])}
                          for lab in ("fake", "real")},
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
    card["tells_real_from_fake"] = ok
    card["summary"] = (
        f"MRI-GAN generator, {size} px, width {ngf}, trained on a CPU on {n_ids} "
        f"FaceForensics++ people; on videos of people it never saw it "
        + ("separates real from fake" if ok else "does NOT reliably tell real from fake")
        + " (video-level AUC of its mean MRI: "
        + ", ".join(f"{k} {v['auc']} on {v['videos']} videos" for k, v in video_level.items())
        + ").")
    card["limits"] = [
        f"Trained on {n_ids} FaceForensics++ people ({', '.join(splits['train']['identities'])})"
        f" at {size} px on a CPU for {gan['step']} steps: a demonstration-sized model, not the "
        "paper's.",
        "Its MRI is its guess of where a face differs from an unseen original; on real faces "
        "it should be near black, and it has seen only a few kinds of manipulation "
        f"({'; '.join(card['training_data']['datasets']) or 'see training_data'}).",
        f"The held-out figures rest on {q['videos']} videos of {len(q['identities'])} person "
        f"and {card['training_data']['labelled_test_videos']} labelled videos: wide intervals.",
        ("On held-out videos its mean-MRI verdicts " +
         ("separated real from fake" if ok else
          f"did not separate real from fake (rule: AUC >= {MIN_AUC} with its 95% interval "
          "above 0.5)") + "; read its maps, not its verdicts, as the evidence."),
        "It says nothing about faces much smaller than the crop size, other compressions, "
        "or manipulation methods unlike the training ones."]
    card["produced_by"] = [
        "mrigan benchmark --pairs ../shared/data/pairs/pairs.csv --labelled "
        "../shared/data/labelled_unpaired/labels.csv --preset default_generator --out RUN",
        "mrigan ship-generator RUN"]
    return card


@torch.no_grad()
def fp16_difference(run_dir: Path, fp32: str, fp16: Path) -> float:
    """Largest |MRI| difference between the fp16 weights and the fp32 export (in [0, 1] MRI
    units), on up to 64 held-out faces."""
    a, b = MRIGenerator.load(fp32, device="cpu"), MRIGenerator.load(fp16, device="cpu")
    heldout = _record(run_dir, "heldout_mri_df")["root"]
    data = MriDfDataset(heldout, None, a.image_size)
    idx = np.linspace(0, len(data) - 1, min(64, len(data))).astype(int)
    faces = torch.stack([data[int(i)]["image"] for i in idx])
    return float((a.predict_tensor(faces) - b.predict_tensor(faces)).abs().max())


def ship_generator(run_dir: str | Path, out: str | Path) -> tuple[Path, Path, dict]:
    """Export the run's generator in fp16 with its model card to ``out`` (+ sidecar)."""
    run_dir, out = Path(run_dir), Path(out)
    card = build_card(run_dir)  # checks the run is complete before anything is written
    gan, export = _record(run_dir, "gan"), _record(run_dir, "export")
    weights, sidecar = export_generator(gan["checkpoint"], out, dtype=torch.float16, card=card)
    card = build_card(run_dir, round(fp16_difference(run_dir, export["generator"], weights), 5))
    weights, sidecar = export_generator(gan["checkpoint"], out, dtype=torch.float16, card=card)
    if weights.stat().st_size > MAX_BYTES:
        raise BenchmarkError(f"{weights.stat().st_size / 1e6:.1f} MB: over the repository's "
                             f"{MAX_BYTES / 2**20:.0f} MiB limit for shipped weights", weights)
    return weights, sidecar, card


__all__ = ["MAX_BYTES", "build_card", "fp16_difference", "ship_generator"]
