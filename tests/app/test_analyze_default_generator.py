"""`mrigan analyze` without --generator: the shipped default generator (fp16 safetensors in the
package) with its model card - the card's verdict threshold, its limits once at the top of
report.html, and, when the card says the generator cannot tell real from fake on held-out
videos, a warning next to EVERY verdict (report and CLI line). Both card outcomes are tested
with a copy of the shipped weights whose sidecar's figures are edited. Real FF++ videos."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

from mrigan import analyze
from mrigan.app.cli import main as cli
from mrigan.fileio import sha256_file
from mrigan.inference import MRIGenerator, sidecar_path
from mrigan.model_card import DEFAULT_GENERATOR, card_summary, tells_real_from_fake

pytestmark = pytest.mark.usefixtures("two_torch_threads")

FAST = ["--every", "100", "--device", "cpu", "--no-progress", "--set", "frames.max_frames=2",
        "--set", "faces.max_side=640"]
WARNING = 'class="warning card-warning"'


def _card(weights: Path) -> dict:
    return json.loads(sidecar_path(weights).read_text(encoding="utf-8"))["model_card"]


def _videos(shared_data: Path) -> list[Path]:
    ffpp = shared_data / "ffpp"
    return [ffpp / "original_sequences/youtube/c23/videos/519.mp4",
            ffpp / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"]


def _sections(report: str) -> list[str]:
    return report.split('<section class="input"')[1:]


def test_shipped_default_generator_is_small_fp16_and_carded():
    assert DEFAULT_GENERATOR.is_file() and DEFAULT_GENERATOR.stat().st_size <= 10 * 2**20
    side = json.loads(sidecar_path(DEFAULT_GENERATOR).read_text(encoding="utf-8"))
    assert side["dtype"] == "float16"
    card = side["model_card"]
    for key in ("training_data", "settings", "held_out", "video_level", "verdict", "limits",
                "departures_from_paper", "produced_by"):
        assert card[key], key
    assert set(card["video_level"]) == {"test", "labelled"}
    held_out = set(card["held_out"]["identities"])
    assert held_out == set(card["training_data"]["held_out_identities"])
    assert not held_out & set(card["training_data"]["train_identities"])
    assert card["tells_real_from_fake"] == tells_real_from_fake(card)
    gen = MRIGenerator.load(DEFAULT_GENERATOR, device="cpu")
    assert gen.image_size == card["settings"]["image_size"]


def test_analyze_without_generator_uses_the_default_and_its_card(shared_data, tmp_path, capsys):
    video = _videos(shared_data)[0]
    out = tmp_path / "out"
    assert cli(["analyze", str(video), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert f"using the default generator {DEFAULT_GENERATOR}" in printed
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    g, card = results["generator"], _card(DEFAULT_GENERATOR)
    assert Path(g["path"]) == DEFAULT_GENERATOR
    assert g["sha256"] == sha256_file(DEFAULT_GENERATOR)
    assert g["card"] == json.loads(json.dumps(card_summary(card)))
    # the verdict used the card's threshold and fraction (chosen on validation videos)
    (entry,) = results["inputs"]
    assert entry["verdict"]["thresholds"] == {
        "threshold": card["verdict"]["mri_threshold"],
        "fraction": card["verdict"]["fake_fraction"]}
    assert g["verdict_from"] == "the generator's model card"
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count('id="generator-card"') == 1
    for limit in card["limits"]:
        assert html.escape(limit) in report
    warned = not tells_real_from_fake(card)
    assert report.count(WARNING) == (1 if warned else 0)
    line = next(t for t in printed.splitlines() if t.startswith(f"{video}: "))
    assert ("WARNING: This generator could not tell real from fake" in line) == warned


@pytest.mark.parametrize("separates", [False, True])
def test_warning_next_to_every_verdict_exactly_when_the_card_says_so(
        shared_data, tmp_path, capsys, separates):
    weights = tmp_path / "gen" / "g.safetensors"
    weights.parent.mkdir()
    shutil.copy(DEFAULT_GENERATOR, weights)
    side = json.loads(sidecar_path(DEFAULT_GENERATOR).read_text(encoding="utf-8"))
    auc, ci = (0.95, [0.8, 1.0]) if separates else (0.62, [0.3, 0.9])
    for v in side["model_card"]["video_level"].values():
        v["auc"], v["auc_ci95"] = auc, ci
    side["model_card"]["verdict"]["mri_threshold"] = 0.05
    sidecar_path(weights).write_text(json.dumps(side), encoding="utf-8")
    out = tmp_path / "out"
    videos = _videos(shared_data)
    assert cli(["analyze", *map(str, videos), "--generator", str(weights), "--out", str(out),
                *FAST]) == 0
    printed = capsys.readouterr().out
    assert "using the default generator" not in printed
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["generator"]["sha256"] == sha256_file(weights)
    assert results["generator"]["card"]["tells_real_from_fake"] is separates
    sections = _sections((out / "report.html").read_text(encoding="utf-8"))
    assert len(sections) == 2 == results["summary"]["analysed"]
    for entry, section in zip(results["inputs"], sections, strict=True):
        assert entry["verdict"]["thresholds"]["threshold"] == 0.05  # the edited card's
        assert (WARNING in section) is not separates  # beside this verdict
        assert "could not tell real from fake" not in section or not separates
    lines = [t for t in printed.splitlines() if t.startswith(tuple(f"{v}: " for v in videos))]
    assert len(lines) == 2
    assert all(("WARNING:" in t) is not separates for t in lines)


def test_set_threshold_overrides_the_card_and_old_or_bad_sidecars(shared_data, ff_examples,
                                                                   tmp_path, capsys):
    image = ff_examples / "ex_deepfakes.png"
    out = tmp_path / "out"
    assert cli(["analyze", str(image), "--out", str(out), *FAST,
                "--set", "verdict.mri_threshold=0.25"]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["config"]["verdict"]["mri_threshold"] == 0.25
    assert results["inputs"][0]["verdict"]["thresholds"]["threshold"] == 0.25
    # a sidecar without a card (every export before cards) still loads: no card, defaults
    weights = tmp_path / "gen" / "g.safetensors"
    weights.parent.mkdir()
    shutil.copy(DEFAULT_GENERATOR, weights)
    side = json.loads(sidecar_path(DEFAULT_GENERATOR).read_text(encoding="utf-8"))
    card = side.pop("model_card")
    sidecar_path(weights).write_text(json.dumps(side), encoding="utf-8")
    out2 = tmp_path / "out2"
    assert cli(["analyze", str(image), "--generator", str(weights), "--out", str(out2),
                *FAST]) == 0
    results = json.loads((out2 / "results.json").read_text(encoding="utf-8"))
    assert results["generator"]["card"] is None
    assert results["config"]["verdict"]["mri_threshold"] == 0.08
    assert WARNING not in (out2 / "report.html").read_text(encoding="utf-8")
    # a card whose limits are not sentences is refused before any work, naming the sidecar
    sidecar_path(weights).write_text(json.dumps({**side, "model_card": {**card, "limits": 3}}),
                                     encoding="utf-8")
    capsys.readouterr()
    assert cli(["analyze", str(image), "--generator", str(weights), "--out",
                str(tmp_path / "out3"), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(sidecar_path(weights)) in err and "limits" in err


def test_python_analyze_without_generator_uses_the_default_and_its_card(ff_examples):
    """``mrigan.analyze(path)`` (the library entry point) takes the shipped generator and its
    card's verdict threshold, like the command line."""
    results = analyze(ff_examples / "ex_deepfakes.png")
    info = results.generator
    assert info["sha256"] == sha256_file(DEFAULT_GENERATOR)
    card = _card(DEFAULT_GENERATOR)
    assert info["card"]["tells_real_from_fake"] == card["tells_real_from_fake"]
    assert info["verdict_from"] == "the generator's model card"
    (only,) = results.inputs
    assert only.analysed and only.faces >= 1
