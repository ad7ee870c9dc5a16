"""Bad inputs and bad models in `mrigan analyze` / `mrigan mri` (issue 15, families 3, 4, 5, 7):
a file name that matplotlib would read as mathtext, a generator with NaN weights (and one that
turns NaN mid-run), a bad config value, and output folders that may not be written to. Each
case runs on real FF++ media copied into tmp_path, through the command line in-process where
the user would use it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _gan_setup import write_tiny_generator

from mrigan.app.cli import main as cli
from mrigan.fileio import sha256_file

pytestmark = pytest.mark.usefixtures("two_torch_threads")

FAST = ["--every", "100", "--device", "cpu", "--no-progress", "--set", "frames.max_frames=2",
        "--set", "faces.max_side=640"]


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Path:
    return write_tiny_generator(tmp_path_factory.mktemp("gen") / "gen.safetensors")


def _nan_generator(path: Path, source: Path) -> Path:
    """A copy of ``source`` (same architecture header) with every weight set to NaN."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no iter
    tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def _strict(path: Path) -> dict:
    """results.json parsed strictly: NaN/Infinity tokens are not JSON."""
    def refuse(token: str):
        raise AssertionError(f"{path} holds {token}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


# ----------------------------------------------------------------------------- family 3


def test_a_dollar_file_name_is_text_in_plots_and_the_batch_completes(ffpp_root, gen, tmp_path):
    import jsonschema

    from mrigan.app.analysis import RESULTS_SCHEMA

    case = tmp_path / "case"
    case.mkdir()
    odd = case / "b_$x^$.mp4"  # mathtext if parsed: "$x^$" is a ParseException
    shutil.copyfile(ffpp_root / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4", odd)
    shutil.copyfile(ffpp_root / "original_sequences/youtube/c23/videos/519.mp4", case / "a.mp4")
    out = tmp_path / "out"
    assert cli(["analyze", str(case), "--generator", str(gen), "--out", str(out), *FAST]) == 0
    results = _strict(out / "results.json")
    jsonschema.Draft202012Validator(RESULTS_SCHEMA).validate(results)
    by_name = {Path(e["path"]).name: e for e in results["inputs"]}
    assert set(by_name) == {"a.mp4", "b_$x^$.mp4"}
    for e in by_name.values():
        assert e["status"] == "analysed" and e["verdict"] is not None, e["reason"]
        assert (out / e["timeline"]).stat().st_size > 1000
    assert results["summary"]["analysed"] == 2 and results["summary"]["skipped"] == {}
    assert "b_$x^$.mp4" in (out / "report.html").read_text(encoding="utf-8")


def test_plot_titles_and_names_are_text_not_mathtext(tmp_path):
    from mrigan.app.report import timeline_png
    from mrigan.fileio import read_image

    faces = [{"frame": i, "track": 0, "mri_mean": 0.1 * i, "fake_probability": None}
             for i in range(3)]
    path = timeline_png(tmp_path / "t.png", faces, threshold=0.08, score_source="mri_mean",
                        title="b_$x^$.mp4: $\\frac{1}{0}$ ^_^")
    assert read_image(path).std() > 5


def test_results_json_is_rewritten_after_every_input(ff_examples, gen, tmp_path):
    from mrigan.app.analysis import AnalyzeConfig, Analyzer

    case = tmp_path / "case"
    case.mkdir()
    shutil.copyfile(ff_examples / "ex_deepfakes.png", case / "1_face.png")
    shutil.copyfile(ff_examples / "ex_deepfakes_mask.png", case / "2_mask.png")  # no face
    out = tmp_path / "out"
    seen: list[list[str]] = []

    def after_input(_r):
        seen.append([e["status"] for e in _strict(out / "results.json")["inputs"]])

    analyzer = Analyzer(gen, None, AnalyzeConfig(device="cpu"))
    res = analyzer.run([case / "1_face.png", tmp_path / "other" / "gone.mp4", case / "2_mask.png"], out,
                       on_input=after_input)
    assert seen == [["analysed"], ["analysed", "missing"], ["analysed", "missing", "no_face"]]
    assert res.summary()["skipped"] == {"missing": 1, "no_face": 1}
    assert (out / "report.html").is_file()


# ----------------------------------------------------------------------------- family 4


def test_nan_weights_are_refused_before_any_work(ff_examples, gen, tmp_path, capsys):
    import mrigan
    from mrigan.errors import MriganError

    bad = _nan_generator(tmp_path / "nan_gen.safetensors", gen)
    # refused when the weights are loaded (mrigan.inference), before any input is read
    with pytest.raises(MriganError) as err:
        mrigan.analyze(ff_examples / "ex_deepfakes.png", generator=bad)
    assert err.value.path == str(bad)
    assert "NaN" in str(err.value)
    out = tmp_path / "out"
    rc = cli(["analyze", str(ff_examples / "ex_deepfakes.png"), "--generator", str(bad),
              "--out", str(out), "--device", "cpu", "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and str(bad) in lines[0] and "NaN" in lines[0]
    assert not out.exists()


def test_non_finite_model_output_is_a_reported_skip_never_a_verdict(ff_examples, gen, tmp_path):
    """Weights that turn NaN after loading (as a diverging fp16 run would give): each input is an
    ``error`` skip naming the generator; no verdict; results.json stays strict JSON."""
    import torch

    from mrigan.app.analysis import AnalyzeConfig, Analyzer

    analyzer = Analyzer(gen, None, AnalyzeConfig(device="cpu"))
    with torch.no_grad():
        for p in analyzer.generator.net.parameters():
            p.fill_(float("nan"))
    case = tmp_path / "case"
    case.mkdir()
    shutil.copyfile(ff_examples / "ex_deepfakes.png", case / "face.png")
    out = tmp_path / "out"
    res = analyzer.run([case / "face.png"], out)
    (r,) = res.inputs
    assert r.status == "error" and r.verdict is None and str(gen) in r.reason
    assert "non-finite" in r.reason
    results = _strict(out / "results.json")
    assert results["summary"]["skipped"] == {"error": 1} and results["summary"]["verdicts"] == {}
    json.dumps(res.to_dict(), allow_nan=False)  # strict JSON from the Python API too


def test_strict_json_refuses_non_finite_numbers():
    from mrigan.app.analysis.results import strict_json

    assert json.loads(strict_json({"a": [1.0, {"b": 2}]})) == {"a": [1.0, {"b": 2}]}
    with pytest.raises(ValueError, match=r"\$\.a\[1\]\.b"):
        strict_json({"a": [1.0, {"b": float("nan")}]})


# ----------------------------------------------------------------------------- config up front


def test_a_bad_verdict_rule_fails_before_any_work(ff_examples, gen, tmp_path, capsys):
    from mrigan.app.analysis import (
        AnalyzeConfig,
        AnalyzeFramesConfig,
        Analyzer,
        AnalyzeVerdictConfig,
    )
    from mrigan.config import ConfigError

    out = tmp_path / "out"
    rc = cli(["analyze", str(ff_examples / "ex_deepfakes.png"), "--generator", str(gen),
              "--out", str(out), "--device", "cpu", "--no-progress", "--set", "verdict.rule=bogus"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1
    assert "verdict.rule" in lines[0] and "bogus" in lines[0] and "count" in lines[0]
    assert not out.exists()
    # the Python API validates before loading anything: a missing generator is not reached
    with pytest.raises(ConfigError, match="AnalyzeFramesConfig.every: 0 is below the minimum 1"):
        Analyzer(tmp_path / "no_such_gen.safetensors", None,
                 AnalyzeConfig(frames=AnalyzeFramesConfig(every=0)))
    with pytest.raises(ConfigError, match="verdict.rule"):
        Analyzer(tmp_path / "no_such_gen.safetensors", None,
                 AnalyzeConfig(verdict=AnalyzeVerdictConfig(rule="bogus")))


# ----------------------------------------------------------------------------- family 7


def test_analyze_refuses_an_existing_file_as_output(ff_examples, gen, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    rc = cli(["analyze", str(ff_examples / "ex_deepfakes.png"), "--generator", str(gen),
              "--out", str(taken), "--device", "cpu", "--no-progress"])
    assert rc == 2 and taken.read_text() == "keep me"
    assert "a file of that name exists" in capsys.readouterr().err


def test_mri_refuses_outputs_inside_an_input_folder_or_on_a_file(ff_examples, tmp_path, capsys):
    case = tmp_path / "case"
    case.mkdir()
    real = shutil.copyfile(ff_examples / "ex_original.png", case / "real.png")
    fake = shutil.copyfile(ff_examples / "ex_deepfakes.png", case / "fake.png")
    before = {p.name: sha256_file(p) for p in case.iterdir()}
    for bad in (case, case / "maps"):
        assert cli(["mri", str(real), str(fake), "--out", str(bad)]) == 2
        assert "inside the input folder" in capsys.readouterr().err
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    assert cli(["mri", str(real), str(fake), "--out", str(taken)]) == 2
    assert "a file of that name exists" in capsys.readouterr().err
    assert {p.name: sha256_file(p) for p in case.iterdir()} == before and taken.read_bytes() == b"x"
    out = tmp_path / "maps"
    assert cli(["mri", str(real), str(fake), "--out", str(out)]) == 0
    summary = json.loads((out / "mri_summary.json").read_text())
    assert Path(summary[0]["mri"]).is_file() and 0 < summary[0]["mean"] < 1


def test_mri_refuses_two_fakes_whose_maps_would_share_a_name(ff_examples, tmp_path, capsys):
    case = tmp_path / "case"
    (case / "r").mkdir(parents=True)
    real = shutil.copyfile(ff_examples / "ex_original.png", case / "r" / "real.png")
    for sub, src in (("a", "ex_deepfakes.png"), ("b", "ex_neuraltextures.png")):
        (case / sub).mkdir()
        shutil.copyfile(ff_examples / src, case / sub / "fake.png")
    out = tmp_path / "maps"
    rc = cli(["mri", str(real), str(case / "a/fake.png"), str(case / "b/fake.png"),
              "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "b/fake.png" in err[0] and "a/fake.png" in err[0]
    assert not out.exists()
