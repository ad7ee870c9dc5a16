"""Repeated-run protocols (issue 13 item 4): N runs give N rows and a numpy-exact summary; a
killed series resumes at its unfinished run and skips finished ones; other settings are
refused; DREAM's protocol draws a new split per run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _torchrun import torchrun_cli

from datasets_builders.synthetic import demo_faces, write_synthetic_mri_df
from detectors.config import DetectorConfig
from detectors.realism.graded import graded_clips, write_clips
from detectors.realism.splits import make_split
from detectors.repeats import repeat_detector, summarise
from mrigan.app.cli import main
from mrigan.checkpoint import load_checkpoint
from mrigan.config import load_config
from mrigan.mri_df_format import read_manifest, write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[2]


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Synthetic MRI-DF whose validation identities are shared out into val and test."""
    root = write_synthetic_mri_df(tmp_path_factory.mktemp("syn"), n_faces=12, size=48,
                                  fakes_per_face=2, val_fraction=0.34, seed=1)
    rows = read_manifest(root)
    held = sorted({r["identity"] for r in rows if r["split"] == "val"})
    for r in rows:
        if r["identity"] in held[: len(held) // 2]:
            r["split"] = "test"
    write_manifest(root, rows)
    return root


def _detector_args(root, out, *extra):
    return ["train-detector", "--config", "configs/detector_plain_cpu.yaml", "--data", str(root),
            "--out-dir", str(out), "--name", "series", "--set", "data.image_size=32",
            "--set", "train.epochs=2", "--set", "train.batch_size=6",
            "--set", "train.augment=[flip]", "--set", "train.log_every=1", *extra]


def _check_summary(doc, n):
    assert doc["n_done"] == len(doc["runs"]) == n
    assert [r["run"] for r in doc["runs"]] == list(range(n))
    for m in doc["metrics"]:
        v = np.array([r["metrics"][m] for r in doc["runs"]])
        np.testing.assert_allclose(doc["mean"][m], np.mean(v), rtol=0, atol=1e-12, err_msg=m)
        np.testing.assert_allclose(doc["std"][m], np.std(v, ddof=1), rtol=0, atol=1e-12, err_msg=m)
        pick = np.argmin(v) if m.endswith(("eer", "rmse", "mae")) else np.argmax(v)
        assert doc["best"][m]["value"] == v[pick]


def test_detector_series_rows_summary_and_resume_after_kill(root, tmp_path, capsys):
    """A straight 3-run series (CLI) and one killed inside run 1 then resumed (CLI) give the
    same rows; the resumed series skips run 0 without touching it."""
    assert main(_detector_args(root, tmp_path / "a", "--repeats", "3")) == 0
    straight = json.loads((tmp_path / "a" / "series" / "repeats.json").read_text())
    _check_summary(straight, 3)
    assert {"val_auc", "test.video.auc", "test.frame.eer"} <= set(straight["metrics"])
    assert [r["seed"] for r in straight["runs"]] == [0, 1, 2]
    table = (tmp_path / "a" / "series" / "repeats.md").read_text()
    first = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert first == ["run", "0", "1", "2", "mean", "std", "best"]
    # different seeds really give different runs
    w = [load_checkpoint(tmp_path / "a" / "series" / f"run{k}" / "checkpoints" / "last.pt")
         for k in range(2)]
    key = next(k for k, v in w[0]["model"].items() if v.is_floating_point())
    assert not np.array_equal(w[0]["model"][key].numpy(), w[1]["model"][key].numpy())

    cfg = load_config(DetectorConfig, "configs/detector_plain_cpu.yaml", [
        f"data.root={root}", f"out_dir={tmp_path / 'b'}", "name=series", "data.image_size=32",
        "train.epochs=2", "train.batch_size=6", "train.augment=[flip]", "train.log_every=1"])

    def kill_in_run1(line):
        if line.startswith("repeat 2/3"):
            kill_in_run1.armed = True
        if getattr(kill_in_run1, "armed", False) and line.startswith("epoch 1 "):
            raise Killed  # run 1 has saved epoch 0 in its last.pt, not epoch 1

    with pytest.raises(Killed):
        repeat_detector(cfg, 3, log=kill_in_run1)
    series = tmp_path / "b" / "series"
    assert len(json.loads((series / "repeats.json").read_text())["runs"]) == 1
    assert load_checkpoint(series / "run1" / "checkpoints" / "last.pt")["epoch"] == 1
    run0_state = (series / "run0" / "repeat.json").stat().st_mtime_ns
    run0_ckpt = (series / "run0" / "checkpoints" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_detector_args(root, tmp_path / "b", "--repeats", "3")) == 0
    out = capsys.readouterr().out
    assert "repeat 1/3: done before (same settings), skipped" in out
    assert "repeat 2/3: continuing the unfinished run" in out and "resumed from" in out
    assert (series / "run0" / "repeat.json").stat().st_mtime_ns == run0_state
    assert (series / "run0" / "checkpoints" / "last.pt").stat().st_mtime_ns == run0_ckpt
    resumed = json.loads((series / "repeats.json").read_text())
    _check_summary(resumed, 3)
    for a, b in zip(straight["runs"], resumed["runs"], strict=True):
        assert a["metrics"] == b["metrics"], a["run"]

    # other settings for an existing series: refused, naming the file and the key
    capsys.readouterr()
    assert main(_detector_args(root, tmp_path / "b", "--repeats", "3",
                               "--set", "train.lr=0.01")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{series / 'run0' / 'repeat.json'}: run 0 of this series was made with other " \
           "settings (config.train.lr (0.001 -> 0.01))" in err


def test_summary_matches_numpy_with_error_metrics_and_nan():
    rows = [{"run": k, "metrics": {"auc": a, "eer": e, "x": x}}
            for k, (a, e, x) in enumerate([(0.7, 0.3, 1.0), (0.9, 0.1, np.nan), (0.8, 0.2, 2.0)])]
    s = summarise(rows)
    assert s["mean"]["auc"] == np.mean([0.7, 0.9, 0.8])
    assert s["std"]["eer"] == np.std([0.3, 0.1, 0.2], ddof=1)
    assert s["best"]["auc"] == {"value": 0.9, "run": 1} and s["best"]["eer"] == {"value": 0.1, "run": 1}
    assert np.isnan(s["mean"]["x"]) and s["best"]["x"] == {"value": 2.0, "run": 2}
    assert summarise(rows[:1])["std"]["auc"] is None


def test_realism_series_draws_a_new_split_per_run(tmp_path, capsys):
    """DREAM's protocol through ``mrigan train-realism --repeats 3``: run k is split with
    data.seed + k and trained with train.seed + k; rows and summary as numpy says."""
    faces = demo_faces(32)
    people = {p: faces[i * 4:(i + 1) * 4] for i, p in enumerate("abcd")}
    clips = graded_clips(people, (0.0, 0.5, 1.0), frames_per_clip=3, seed=0)
    labels = write_clips(clips, tmp_path / "clips")
    args = ["train-realism", "--config", "configs/realism_cpu.yaml",
            "--set", f"data.labels=[{labels}]", "--set", f"data.clips={tmp_path / 'clips'}",
            "--set", "data.image_size=32", "--set", "data.test_fraction=0.25",
            "--set", "data.val_fraction=0.34", "--set", "train.epochs=1",
            "--set", "sampler.num_frames=2", "--set", "sampler.test_draws=1",
            "--set", "train.val_draws=1", "--set", "model.hidden=8",
            "--no-baseline", "--out", str(tmp_path / "out"), "--repeats", "3"]
    assert main(args) == 0
    doc = json.loads((tmp_path / "out" / "repeats.json").read_text())
    _check_summary(doc, 3)
    assert doc["protocol"] == "splits"
    assert [(r["seed"], r["split_seed"]) for r in doc["runs"]] == [(0, 0), (1, 1), (2, 2)]
    records = [c.record for c in clips]
    for r in doc["runs"]:
        expected = make_split(records, "identity", 0.25, 0.34, r["split_seed"])
        assert r["info"]["split"]["held_out_identities"] == list(expected.held_out_identities)
        report = json.loads((tmp_path / "out" / f"run{r['run']}" / "reports" / "report.json")
                            .read_text())
        assert r["metrics"]["model.average.srcc"] == report["models"]["model"]["average"]["srcc"]
    assert len({tuple(r["info"]["split"]["held_out_identities"]) for r in doc["runs"]}) > 1
    # a rerun with the same settings skips all three
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("done before (same settings), skipped") == 3


def test_detector_series_under_torchrun(root, tmp_path, capsys):
    """``--repeats`` under torchrun (2 CPU ranks, gloo): each run trains with DDP on the global
    batches, rank 0 alone evaluates, logs and writes the series; the same command in one
    process then finds both runs done with the same settings and skips them."""
    args = _detector_args(root, tmp_path, "--repeats", "2")
    args[2] = str(ROOT / args[2])  # torchrun runs in tmp_path
    stdout = torchrun_cli(args, cwd=tmp_path)
    assert stdout.count("repeat 2/2: seed 1") == 1  # rank 0 logs alone
    doc = json.loads((tmp_path / "series" / "repeats.json").read_text())
    _check_summary(doc, 2)
    assert "test.video.auc" in doc["metrics"]
    n_train = sum(r["split"] == "train" for r in read_manifest(root))
    for k in range(2):
        state = load_checkpoint(tmp_path / "series" / f"run{k}" / "checkpoints" / "last.pt")
        assert state["step"] == 2 * -(-n_train // 6)  # 2 epochs of global batches of 6
        assert (tmp_path / "series" / f"run{k}" / "reports").is_dir()
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("done before (same settings), skipped") == 2
    assert json.loads((tmp_path / "series" / "repeats.json").read_text()) == doc
