"""``mrigan train-realism`` / ``evaluate-realism`` with ``model.name: da-clip``: a tiny open_clip
CLIP (random weights saved to a local file) trained on graded self-blends of real faces (FF++
originals and the FF++ example frame from ../shared/data) with per-video descriptions; run
folder and checkpoint, the report's metrics and top-K retrieval recomputed independently,
exact resume after a kill, and the one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys

import numpy as np
import pytest
import scipy.stats
import torch
import yaml

pytest.importorskip("open_clip", reason="DA-CLIP needs the optional extra: pip install 'mrigan[clip]'")

from _media import shared_media  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from datasets_builders.synthetic import demo_faces  # noqa: E402
from detectors.realism.config import RealismConfig  # noqa: E402
from detectors.realism.da_clip import build_clip, build_tokenizer, tokenize_descriptions  # noqa: E402
from detectors.realism.da_clip_train import DaClipTrainer, build_da_clip  # noqa: E402
from detectors.realism.data import prepare_data  # noqa: E402
from detectors.realism.dataset import sequence_tensors  # noqa: E402
from detectors.realism.graded import faces_from_media, graded_clips, write_clips  # noqa: E402
from detectors.realism.train import load_regressor, train_regressor  # noqa: E402
from mrigan.app.cli import main  # noqa: E402
from mrigan.checkpoint import load_checkpoint  # noqa: E402
from mrigan.config import load_config, parse_overrides  # noqa: E402

SIZE = 32
TINY = {"embed_dim": 16,
        "vision_cfg": {"layers": 1, "width": 32, "patch_size": 8, "image_size": SIZE, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
SENTENCES = {0: ["the face boundary is clearly visible", "skin colour differs from the neck"],
             1: ["the mouth is blurry", "the face flickers"],
             2: ["slight blur around the mouth"],
             3: ["the edges of the face are a little soft", "almost natural"],
             4: ["the photorealism is very high, no detectable signs of forgery"]}


@pytest.fixture(scope="module")
def rated(shared_data, tmp_path_factory):
    """Graded clips of four people on disk (labels table), their descriptions CSV, the tiny
    CLIP architecture as JSON and its random weights as safetensors."""
    root = tmp_path_factory.mktemp("daclip")
    torch.set_num_threads(1)
    media = shared_media(shared_data)
    people = faces_from_media({k: media[k] for k in ("ffpp519", "ffpp634", "ffexample")},
                              size=SIZE, max_frames=8)
    people["astronaut"] = demo_faces(SIZE)[:8]
    clips = graded_clips(people, LEVELS, frames_per_clip=4, seed=0)
    labels = write_clips(clips, root / "clips")
    desc = root / "descriptions.csv"
    with desc.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "description"])
        for i, c in enumerate(clips):
            level = LEVELS.index(c.record.info["quality"])
            key = c.key + ".mp4" if i % 2 else c.key  # keys match with or without extension
            for s in SENTENCES[level]:
                w.writerow([key, s])
    arch = root / "tiny_clip.json"
    arch.write_text(json.dumps(TINY))
    torch.manual_seed(0)
    weights = root / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in build_clip(TINY).state_dict().items()}, str(weights))
    return {"root": root, "labels": labels, "clips": root / "clips", "descriptions": desc,
            "arch": arch, "weights": weights, "n": len(clips)}


def _sets(rated, **extra) -> list[str]:
    values = {"data.labels": f"[{rated['labels']}]", "data.clips": str(rated["clips"]),
              "data.videos": "", "data.image_size": SIZE, "data.split": "identity",
              "data.test_fraction": 0.3, "data.val_fraction": 0.25,
              "model.backbone": str(rated["arch"]), "model.weights": str(rated["weights"]),
              "da_clip.descriptions": str(rated["descriptions"]), "da_clip.top_k": 2,
              "sampler.num_frames": 3, "sampler.test_draws": 2, "train.val_draws": 1,
              "train.epochs": 2, "train.batch_size": 4, "train.lr": 1e-3, "train.device": "cpu",
              "train.precision": "fp32", "train.num_workers": 0, "train.tensorboard": False,
              "train.threads": 1, "baseline.draws": 1, **extra}
    out = ["--config", "configs/realism_da_clip.yaml"]
    for k, v in values.items():
        out += ["--set", f"{k}={v}"]
    return out


def _metrics_from_csv(rows, name, s):
    t = np.array([float(r["mos"]) for r in rows if r["test_set"] == s])
    p = np.array([float(r[name]) for r in rows if r["test_set"] == s])
    return t, p


def test_train_then_evaluate_da_clip_with_retrieval(rated, tmp_path, capsys, one_torch_thread):
    run = tmp_path / "run"
    assert main(["train-realism", *_sets(rated), "--out", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "da-clip" and saved["train"]["loss"] == "norm_in_norm_l1 + kl_pred_target"
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert (run / "checkpoints" / "last.pt").is_file()
    assert ckpt["clip_architecture"] == TINY  # the run does not need the JSON file again
    assert any(k.startswith("clip.visual.") for k in ckpt["model"]) and "regressor.weight" in ckpt["model"]
    report = json.loads((run / "reports" / "report.json").read_text())
    assert report["model_name"] == "da-clip" and set(report["models"]) == {"model", "baseline"}
    train_keys = set(ckpt["descriptions"])
    assert len(train_keys) == report["data"]["split"]["train"]
    for key, sentences in ckpt["descriptions"].items():  # joined by label key (+- extension)
        assert sentences == SENTENCES[int(key.rsplit("/q", 1)[1][:2])], key

    # PLCC / SRCC / RMSE per test set, recomputed from predictions.csv with SciPy
    with open(run / "reports" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for name in ("model", "baseline"):
        for s, rep in report["models"][name]["sets"].items():
            t, p = _metrics_from_csv(rows, name, s)
            assert rep["n"] == len(t) >= 2
            assert rep["plcc"] == pytest.approx(scipy.stats.pearsonr(t, p)[0], abs=1e-6)
            assert rep["srcc"] == pytest.approx(scipy.stats.spearmanr(t, p)[0], abs=1e-6)
            assert rep["rmse"] == pytest.approx(np.sqrt(np.mean((t - p) ** 2)), abs=1e-6)

    # top-K retrieval (Fig. 9): recomputed from the loaded model with NumPy cosines over the
    # same seeded test sequences
    model, cfg = load_regressor(run / "checkpoints" / "best.pt")
    retrieval = report["retrieval"]
    data = prepare_data(cfg.data, need_mri=False)
    tok = build_tokenizer(16)
    keys = list(model.descriptions)
    with torch.no_grad():
        texts = np.stack([model.text_embedding(*tokenize_descriptions(tok, [model.descriptions[k]]))[0].numpy()
                          for k in keys])
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    for s, clips in data.tests.items():
        assert [r["video"] for r in retrieval[s]] == [c.key for c in clips]
        for clip, row in zip(clips, retrieval[s], strict=True):
            seqs = cfg.sampler.test_sequences(len(clip), clip.key, cfg.train.seed)
            with torch.no_grad():
                x = np.mean([model.video_embedding(sequence_tensors(clip, idx, "plain", SIZE)["plain"][None])[0].numpy()
                             for idx in seqs], axis=0)
            cos = texts @ (x / np.linalg.norm(x))
            # videos with the same sentences tie: compare each hit's cosine, not tie order
            assert [h["similarity"] for h in row["retrieved"]] == pytest.approx(
                np.sort(cos)[::-1][:2].tolist(), abs=1e-5)
            assert [cos[keys.index(h["video"])] for h in row["retrieved"]] == pytest.approx(
                [h["similarity"] for h in row["retrieved"]], abs=1e-5)
            assert all(h["video"] in train_keys and h["sentences"] == ckpt["descriptions"][h["video"]]
                       for h in row["retrieved"])
    with open(run / "reports" / "retrieval.csv", newline="") as fh:
        hits = list(csv.DictReader(fh))
    assert len(hits) == 2 * sum(len(v) for v in retrieval.values())
    assert {h["rank"] for h in hits} == {"1", "2"} and all(h["sentences"] for h in hits)

    # evaluate-realism on the checkpoint alone (architecture JSON gone): same numbers, same
    # retrieval
    rated_arch = rated["arch"].read_text()
    rated["arch"].unlink()
    try:
        out = tmp_path / "eval"
        assert main(["evaluate-realism", "--checkpoint", str(run / "checkpoints" / "best.pt"),
                     "--no-baseline", "--out", str(out)]) == 0
    finally:
        rated["arch"].write_text(rated_arch)
    assert "unseen_identity" in capsys.readouterr().out
    ev = json.loads((out / "report.json").read_text())
    for s, rep in report["models"]["model"]["sets"].items():
        assert ev["models"]["model"]["sets"][s]["srcc"] == pytest.approx(rep["srcc"], abs=1e-6)
        assert ev["models"]["model"]["sets"][s]["rmse"] == pytest.approx(rep["rmse"], abs=1e-6)
    assert ev["retrieval"].keys() == retrieval.keys()
    for s in retrieval:
        for got, want in zip(ev["retrieval"][s], retrieval[s], strict=True):
            assert [h["video"] for h in got["retrieved"]] == [h["video"] for h in want["retrieved"]]
            assert [h["similarity"] for h in got["retrieved"]] == pytest.approx(
                [h["similarity"] for h in want["retrieved"]], abs=1e-5)


class Killed(Exception):
    pass


def test_killed_da_clip_run_resumes_bit_exact(rated, tmp_path, one_torch_thread):
    """The realism trainer's exact-resume pattern (tests/detectors/test_realism_train.py) on
    the da-clip model: a run killed after epoch 1 and resumed ends as an uninterrupted one."""
    sets = _sets(rated, **{"train.epochs": 3})
    overrides = parse_overrides([sets[i + 1] for i in range(2, len(sets), 2)])
    cfg = load_config(RealismConfig, "configs/realism_da_clip.yaml", overrides)
    data = prepare_data(cfg.data, need_mri=False)
    full = train_regressor(cfg, data.train, data.val, tmp_path / "full", log=lambda _: None)

    def kill_after_epoch_1(line):
        if line.startswith("epoch   1"):
            raise Killed

    with pytest.raises(Killed):
        train_regressor(cfg, data.train, data.val, tmp_path / "split", log=kill_after_epoch_1)
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["epoch"] == 0
    again = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=True))
    resumed = train_regressor(again, data.train, data.val, tmp_path / "split", log=lambda _: None)
    assert resumed.history == full.history and resumed.best_epoch == full.best_epoch
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["descriptions"] == b["descriptions"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # the loss is Eq. 7: the logged terms add up to it (lambda 0.2) and the text tower trained
    # too (its weights moved from the initial file)
    for row in full.history:
        assert row["loss"] == pytest.approx(
            row["loss_visual"] + row["loss_textual"] + 0.2 * row["loss_sim"], rel=1e-5)
        assert 0.0 <= row["loss_sim"] <= 2.0
    init = load_file(str(rated["weights"]))
    assert not torch.equal(init["token_embedding.weight"], a["model"]["clip.token_embedding.weight"])


def test_sentences_per_video_and_key_matching(rated, one_torch_thread):
    sets = _sets(rated)
    cfg = load_config(RealismConfig, "configs/realism_da_clip.yaml",
                      parse_overrides([sets[i + 1] for i in range(2, len(sets), 2)]))
    data = prepare_data(cfg.data, need_mri=False)
    trainer = DaClipTrainer(cfg, build_da_clip(cfg.model), torch.device("cpu"), data.train)
    counts = [len(SENTENCES[int(c.key.rsplit("/q", 1)[1][:2])]) for c in data.train]
    assert trainer.tokens.shape[:2] == (len(data.train), max(counts))
    assert trainer.sentence_mask.sum(1).tolist() == counts  # every sentence, keys +- ".mp4"
    cut = dataclasses.replace(cfg, da_clip=dataclasses.replace(cfg.da_clip, max_sentences=1))
    trainer = DaClipTrainer(cut, build_da_clip(cfg.model), torch.device("cpu"), data.train)
    assert trainer.tokens.shape[1] == 1 and trainer.sentence_mask.all()


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mrigan train-realism: error: "), err
    return err


def test_da_clip_errors_are_one_line(rated, tmp_path, capsys, monkeypatch, one_torch_thread):
    out = ["--out", str(tmp_path / "run")]
    nope = tmp_path / "nope.safetensors"
    assert str(nope) in _error(capsys, ["train-realism", *_sets(rated, **{"model.weights": nope}), *out])
    wrong = tmp_path / "wrong.safetensors"
    save_file({"something.else": torch.zeros(2)}, str(wrong))
    err = _error(capsys, ["train-realism", *_sets(rated, **{"model.weights": wrong}), *out])
    assert str(wrong) in err and "does not fit" in err
    missing = tmp_path / "missing.csv"
    err = _error(capsys, ["train-realism", *_sets(rated, **{"da_clip.descriptions": missing}), *out])
    assert f"{missing}: descriptions CSV not found" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("name,text\nx,y\n")
    err = _error(capsys, ["train-realism", *_sets(rated, **{"da_clip.descriptions": bad}), *out])
    assert str(bad) in err and "video,description" in err
    few = tmp_path / "few.csv"
    lines = rated["descriptions"].read_text().splitlines()
    few.write_text("\n".join(lines[:6]) + "\n")
    err = _error(capsys, ["train-realism", *_sets(rated, **{"da_clip.descriptions": few}), *out])
    assert str(few) in err and "training videos have no description" in err
    err = _error(capsys, ["train-realism", *_sets(rated, **{"data.image_size": 64}), *out])
    assert "data.image_size 64 does not match the CLIP model's input size 32" in err
    err = _error(capsys, ["train-realism", *_sets(rated, **{"model.name": "dream"}), *out])
    assert "model.name 'dream' is not one of ['da-clip', 'regressor']" in err
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if the extra were not installed
    err = _error(capsys, ["train-realism", *_sets(rated), *out])
    assert "pip install 'mrigan[clip]'" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
