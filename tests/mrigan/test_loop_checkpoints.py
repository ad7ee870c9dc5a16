"""The training-loop skeleton (mrigan.loop): unusable checkpoints on resume are one clear error
through the command line (exit 2, one line naming the file, best.pt offered), an architecture
change names the differing keys, orphan temp files of a killed save are removed at start."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.app.cli import main
from mrigan.checkpoint import CheckpointError
from mrigan.loop import BestTracker, check_same_architecture, remove_orphan_temps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished GAN run through the CLI: argv, its run folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("loop")
    data = write_synthetic_mri_df(root / "mri_df", n_faces=8, size=32)
    argv = ["train-gan", "--config", "configs/mri_gan_cpu.yaml", "--set", f"data.root={data}",
            "--set", f"out_dir={root / 'runs'}", "--set", "name=run", "--set",
            "model.image_size=32", "--set", "model.ngf=4", "--set", "model.ndf=4",
            "--set", "train.batch_size=4", "--set", "train.max_steps=2",
            "--set", "train.eval_every=2", "--set", "data.eval_samples=4"]
    assert main(argv) == 0
    run = root / "runs" / "run"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    return argv, run


def _copy_run(trained, tmp_path):
    argv, run = trained
    out = tmp_path / "runs"
    shutil.copytree(run, out / "run")
    argv = [a if not a.startswith("out_dir=") else f"out_dir={out}" for a in argv]
    return argv, out / "run"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("damage", ["missing", "zero-byte", "truncated", "corrupt"])
def test_unusable_last_checkpoint_on_resume_names_it_and_offers_best(trained, tmp_path, capsys,
                                                                     damage):
    argv, run = _copy_run(trained, tmp_path)
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    if damage == "missing":
        last.unlink()
    elif damage == "zero-byte":
        last.write_bytes(b"")
    elif damage == "truncated":
        last.write_bytes(data[: len(data) // 2])
    else:
        last.write_bytes(bytes(reversed(data)))
    capsys.readouterr()
    assert main(argv + ["--set", "train.max_steps=4", "--resume"]) == 2
    line = _one_error_line(capsys)
    assert str(last) in line and str(run / "checkpoints" / "best.pt") in line, line
    assert "Traceback" not in line
    # the offered best.pt does resume
    assert main(argv + ["--set", "train.max_steps=4", "--resume",
                        str(run / "checkpoints" / "best.pt")]) == 0
    assert "trained 4 steps" in capsys.readouterr().out


def test_architecture_change_on_resume_names_the_differing_keys(trained, tmp_path, capsys):
    argv, run = _copy_run(trained, tmp_path)
    capsys.readouterr()
    assert main(argv + ["--set", "model.ngf=8", "--resume"]) == 2
    line = _one_error_line(capsys)
    assert str(run / "checkpoints" / "last.pt") in line and "ngf (4 -> 8)" in line, line


def test_orphan_temp_files_of_a_killed_save_are_removed_at_start(trained, tmp_path, capsys):
    argv, run = _copy_run(trained, tmp_path)
    orphans = [run / "checkpoints" / ".last.pt.k1ll3d.tmp", run / ".eval_history.json.x.tmp"]
    for p in orphans:
        p.write_bytes(b"half a checkpoint")
    keep = run / "checkpoints" / "notes.tmp"  # not an atomic-save temp name: kept
    keep.write_text("mine")
    assert main(argv + ["--set", "train.max_steps=4", "--resume"]) == 0
    assert not any(p.exists() for p in orphans) and keep.read_text() == "mine"
    assert remove_orphan_temps(tmp_path / "nowhere") == []


def test_state_dict_architecture_check_names_keys():
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)).state_dict()
    b = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 1)).state_dict()
    check_same_architecture("x.pt", a, dict(a))  # same: no error
    with pytest.raises(CheckpointError, match=r"x\.pt: .*0\.weight \(\(4, 3\) -> \(5, 3\)\)") as e:
        check_same_architecture("x.pt", a, b)
    assert "1.bias" not in str(e.value)  # same shape (1,): not listed
    c = dict(a, extra=torch.zeros(1))
    with pytest.raises(CheckpointError, match=r"extra \(missing -> \(1,\)\)"):
        check_same_architecture("x.pt", a, c)


def test_best_tracker_by_named_metric_in_either_direction():
    higher, lower = BestTracker("auc"), BestTracker("rmse", higher_is_better=False)
    marks = [(higher.update(v, i), lower.update(v, i)) for i, v in enumerate([0.5, 0.7, 0.6,
                                                                               math.nan, 0.4])]
    assert [m[0] for m in marks] == [True, True, False, False, False]
    assert [m[1] for m in marks] == [True, False, False, False, True]
    assert (higher.value, higher.step, lower.value, lower.step) == (0.7, 1, 0.4, 4)
