"""``mrigan benchmark --folds K`` on the shared real pairs (4 FF++ identity groups), tiny
settings: every group is tested by exactly one fold, no fold's test identity reaches any of its
training stages (GAN, plain and MRI detector, their validation), the pooled figures are those
of the folds' own out-of-fold predictions, a rerun skips every stage, a change is refused;
the detectors' fake sources (``data.train_fakes``) select what they should."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _benchmark_setup import TINY, labelled_pair_csv
from sklearn.metrics import roc_auc_score

from detectors.config import DetectorConfig
from detectors.data import SELF_BLEND, keeps_fake
from detectors.train import split_rows
from mrigan.app.benchmark.folds import deal_folds
from mrigan.app.benchmark.pooled import stratified_bootstrap
from mrigan.app.cli import main
from mrigan.config import load_config
from mrigan.mri_df_format import read_manifest
from mrigan.train import GanConfig

FOLD_STAGES = ("mri_df", "heldout_mri_df", "gan", "export", "detector_plain", "detector_mri",
               "faces_validation", "faces_test", "eval_plain", "eval_mri", "eval_mri_mean",
               "gan_quality")


def _argv(shared_data: Path, out: Path, extra=()) -> list[str]:
    argv = ["benchmark", "--pairs", str(shared_data / "pairs" / "pairs.csv"), "--preset", "cpu",
            "--labelled", str(labelled_pair_csv(shared_data, out.parent)), "--out", str(out),
            "--folds", "2"]
    for item in (*TINY, "data.self_blend_per_real=1", *extra):
        argv += ["--set", item]
    return argv


def _videos(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_tiny_folds_end_to_end_no_leak_pooled_resume(tmp_path, shared_data, capsys,
                                                     two_torch_threads):
    out = tmp_path / "folds"
    assert main(_argv(shared_data, out)) == 0
    first = capsys.readouterr().out
    plan = json.loads((out / "folds" / "folds.json").read_text())
    report = json.loads((out / "report" / "folds.json").read_text())

    # every identity group is one fold's test set, exactly once
    assert len(plan["folds"]) == 2 and len(plan["groups"]) == 4
    tested = [g for f in plan["folds"] for g in f["test_groups"]]
    assert sorted(tested) == sorted(plan["groups"])
    all_manifest = read_manifest(out / "mri_df" / "data")
    assert {r["method"] for r in all_manifest} >= {SELF_BLEND, "original"}

    for i, fold in enumerate(plan["folds"]):
        roles = fold["roles"]
        test_ids = {k for k, v in roles.items() if v == "test"}
        val_ids = {k for k, v in roles.items() if v == "val"}
        assert test_ids and val_ids and not test_ids & val_ids
        fdir = out / f"fold_{i}"
        # the fold's training data: no test identity, self-blends only of training groups
        view = read_manifest(fdir / "mri_df" / "data")
        assert not test_ids & {r["identity"] for r in view}
        assert {r["identity"] for r in view if r["split"] == "val"} == val_ids
        assert all(roles[r["identity"]] == "train" for r in view if r["method"] == SELF_BLEND)
        assert any(r["method"] == SELF_BLEND for r in view)
        # ... which is what the GAN and both detectors (train and validation rows) read
        gcfg = load_config(GanConfig, fdir / "gan" / "run" / "config.yaml")
        assert Path(gcfg.data.root) == fdir / "mri_df" / "data"
        for kind in ("plain", "mri"):
            dcfg = load_config(DetectorConfig, fdir / f"detector_{kind}" / "run" / "config.yaml")
            train_rows, val_rows = split_rows(dcfg)
            assert train_rows and val_rows
            assert not test_ids & {r["identity"] for r in train_rows + val_rows}
            assert {r["identity"] for r in val_rows} == val_ids
        # the video rule's data: validation groups only; the test set: exactly the test groups
        val_faces = read_manifest(fdir / "faces_validation" / "data", require_mri=False)
        assert {r["identity"] for r in val_faces} == val_ids
        test_faces = read_manifest(fdir / "faces_test" / "data", require_mri=False)
        assert {r["identity"] for r in test_faces} == test_ids
        held = read_manifest(fdir / "heldout_mri_df" / "data")
        assert {r["identity"] for r in held} == test_ids
        assert SELF_BLEND not in {r["method"] for r in held}

    # pooled rows = the folds' own out-of-fold predictions; labelled = mean over the folds
    rows = {(r["test_set"], r["detector"]): r for r in report["table"]}
    assert set(rows) == {(s, d) for s in ("test", "labelled") for d in ("plain", "mri",
                                                                        "mri_mean")}
    for det in ("plain", "mri", "mri_mean"):
        preds = [_videos(out / f"fold_{i}" / f"eval_{det}" / "report" / "predictions"
                         / "test_videos.csv") for i in range(2)]
        pooled = [r for p in preds for r in p]
        assert len(pooled) == len({r["video"] for r in pooled}) == 8
        y = [r["label"] == "fake" for r in pooled]
        s = [float(r["score"]) for r in pooled]
        assert rows[("test", det)]["auc"] == pytest.approx(roc_auc_score(y, s))
        assert rows[("test", det)]["n"] == 8 and rows[("test", det)]["identities"] == 4
        lab = [{r["video"]: r for r in _videos(out / f"fold_{i}" / f"eval_{det}" / "report"
                                               / "predictions" / "labelled_videos.csv")}
               for i in range(2)]
        videos = sorted(lab[0])
        mean = [np.mean([float(f[v]["score"]) for f in lab]) for v in videos]
        y_lab = [lab[0][v]["label"] == "fake" for v in videos]
        assert rows[("labelled", det)]["auc"] == pytest.approx(roc_auc_score(y_lab, mean))
        # threshold-free: videos ranked by their faces' mean score (each fold's faces.csv)
        face_mean = {}
        for i in range(2):
            faces = _videos(out / f"fold_{i}" / f"eval_{det}" / "report" / "predictions"
                            / "test_faces.csv")
            for v in {r["video"] for r in faces}:
                face_mean[v] = np.mean([float(r["p_fake"]) for r in faces if r["video"] == v])
        assert rows[("test", det)]["mean_face"]["auc"] == pytest.approx(
            roc_auc_score(y, [face_mean[r["video"]] for r in pooled]))
        for key in ("ci95", "ci95_groups"):
            lo, hi = rows[("test", det)][key]["auc"]
            assert 0.0 <= lo <= hi <= 1.0
    md = (out / "report" / "folds.md").read_text()
    assert "| test | plain | 8 (4/4) | 4 |" in md

    # a rerun skips every stage (top level and per fold) and gives the same table
    assert main(_argv(shared_data, out)) == 0
    second = capsys.readouterr().out
    for stage in ("folds", "mri_df", "faces", "faces_labelled", "report"):
        assert f"\n[{stage}] done earlier with the same settings: skipped" in "\n" + second
    for i in range(2):
        for stage in FOLD_STAGES:
            assert f"fold {i} [{stage}] done earlier with the same settings: skipped" in second
            assert f"fold {i} [{stage}] running" in first
    again = json.loads((out / "report" / "folds.json").read_text())
    assert again["table"] == report["table"]

    # another fake source for the detectors is refused as a change, naming the key; with
    # SBI's selection the same training view gives real faces against self-blends only
    assert main(_argv(shared_data, out, ["detector.set.data.train_fakes=self_blend"])) == 2
    err = capsys.readouterr().err
    assert "detector_plain" in err and "train_fakes" in err
    dcfg = load_config(DetectorConfig, out / "fold_0" / "detector_plain" / "run" / "config.yaml",
                       ["data.train_fakes=self_blend"])
    train_rows, val_rows = split_rows(dcfg)
    assert {r["method"] for r in train_rows if r["label"] == 1} == {SELF_BLEND}
    assert {r["label"] for r in train_rows} == {0, 1}
    assert SELF_BLEND not in {r["method"] for r in val_rows}  # validation: real fakes
    real_only = load_config(DetectorConfig, out / "fold_0" / "detector_plain" / "run"
                            / "config.yaml", ["data.train_fakes=real"])
    assert SELF_BLEND not in {r["method"] for r in split_rows(real_only)[0]}


def test_too_many_folds_is_one_line_and_exit_2(tmp_path, shared_data, capsys):
    argv = _argv(shared_data, tmp_path / "out")
    argv[argv.index("--folds") + 1] = "5"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--folds 5" in err[0] and "4 identity groups" in err[0]


def test_self_blend_only_needs_self_blends(tmp_path, shared_data, capsys):
    """SBI without any self-blend built is refused before a detector trains."""
    argv = _argv(shared_data, tmp_path / "out", ["data.self_blend_per_real=0",
                                                 "detector.set.data.train_fakes=self_blend",
                                                 "detectors=[plain]"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "self_blend_per_real is 0" in err


def test_deal_folds_balances_videos_and_is_deterministic():
    sizes = {"a": 10, "b": 10, "c": 8, "d": 2, "e": 2, "f": 2, "g": 2}
    folds = deal_folds(sizes, 7)
    assert sorted(g for f in folds for g in f) == sorted(sizes)
    assert all(len(f) == 1 for f in folds)
    three = deal_folds(sizes, 3)
    assert three == deal_folds(dict(reversed(list(sizes.items()))), 3)
    assert [sum(sizes[g] for g in f) for f in three] == [12, 12, 12]  # a+e, b+f, c+d+g


def test_keeps_fake_selects_the_fake_sources():
    rows = [{"label": 0, "method": "original"}, {"label": 1, "method": "Deepfakes"},
            {"label": 1, "method": SELF_BLEND}]
    assert [keeps_fake(r, "all") for r in rows] == [True, True, True]
    assert [keeps_fake(r, "real") for r in rows] == [True, True, False]
    assert [keeps_fake(r, "self_blend") for r in rows] == [True, False, True]


def test_stratified_bootstrap_within_groups_and_over_groups():
    """Within-group resampling keeps every group's videos in its group: a group of one video
    per class never varies, so two such groups give a zero-width interval; resampling the
    groups too varies the AUC. Percentiles of the resampled AUCs, as computed by hand."""
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.2, 0.4, 0.6])
    strata = ["g1|fake", "g1|real", "g2|fake", "g2|real"]
    ci = stratified_bootstrap(y, s, s >= 0.5, strata, n_boot=50, seed=0)
    auc = roc_auc_score(y, s)
    assert ci["auc"] == pytest.approx([auc, auc])
    groups = ["g1", "g1", "g2", "g2"]
    wide = stratified_bootstrap(y, s, s >= 0.5, groups, n_boot=400, seed=0, clusters=True)
    assert wide["auc"][0] < auc < wide["auc"][1]
    # by hand: the same draws
    rng = np.random.default_rng(0)
    idx_of = [np.array([0, 1]), np.array([2, 3])]
    draws = []
    for _ in range(400):
        drawn = [idx_of[j] for j in rng.integers(0, 2, 2)]
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in drawn])
        if len(set(y[idx])) == 2:
            draws.append(roc_auc_score(y[idx], s[idx]))
    assert wide["auc"] == pytest.approx([np.percentile(draws, 2.5), np.percentile(draws, 97.5)])
