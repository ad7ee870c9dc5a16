"""``run_benchmark(cfg, out)``: the MRI-GAN paper's protocol end to end, stage by stage.

split -> mri_df (training identities) + heldout_mri_df (test identities, GAN quality only)
-> gan -> export -> detector_plain, detector_mri -> face sets (validation, test, labelled)
-> eval_plain, eval_mri, eval_mri_mean (the generator alone: a face's score is its mean MRI,
the analyst's default path) -> gan_quality -> report. See :mod:`mrigan.app.benchmark.stages` for
how each stage is skipped, resumed or refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mrigan.app.benchmark import data, evaluation, generator_score, models, report
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.split import split_stage
from mrigan.app.benchmark.stages import BenchmarkError, Stages, file_hash
from mrigan.config import save_config, to_dict
from mrigan.outputs import check_output_dir

_log = logging.getLogger(__name__)

WHAT = ("Identity-grouped split of the paired videos; MRI-GAN and both detectors trained on "
        "the training identities only; video rule chosen on the validation identities; scored "
        "on videos of identities no model saw (and on the --labelled videos, if given). Few "
        "videos and identities make wide intervals: this compares the two inputs on this data, "
        "it does not estimate performance on a dataset.")


def data_stages(cfg: BenchmarkConfig, st: Stages, log=_log.info) -> tuple[dict, dict, dict]:
    """The first three stages: the identity-grouped ``split``, the MRI-DF of its training and
    validation identities (``mri_df``, with ``data.self_blend_per_real`` self-blended fakes per
    real face of its train split) and the one of its test identities (``heldout_mri_df``, GAN
    quality only, never self-blended). Shared with ``bench/tau_sweep.py``, so both reuse one another's folders."""
    listing = ({"sources": [to_dict(s) for s in cfg.sources]} if cfg.sources
               else {"pairs": file_hash(cfg.pairs)})
    split = st.run("split", {**listing, "split": to_dict(cfg.split)},
                   lambda f: split_stage(cfg, f))
    mdf_settings = data.mri_df_settings(cfg)
    mri_df = st.run("mri_df", {"split": split["fingerprint"], **mdf_settings,
                               **data.self_blend_settings(cfg)},
                    lambda f: data.build_stage(cfg, split["trainval_csv"], f,
                                               val=cfg.split.val, self_blend=True, log=log))
    heldout = st.run("heldout_mri_df", {"split": split["fingerprint"], **mdf_settings},
                     lambda f: data.build_stage(cfg, split["test_csv"], f, val=0.0, log=log))
    return split, mri_df, heldout


def train_stages(cfg: BenchmarkConfig, st: Stages, mri_df: dict,
                 log=_log.info) -> tuple[dict | None, dict | None, dict]:
    """``gan`` -> ``export`` -> ``detector_plain``, ``detector_mri`` on an MRI-DF stage's
    result; without ``mri`` in ``cfg.detectors`` only the plain detector (no GAN at all).
    Returns (gan, export, {detector: result}); gan and export are None without the GAN."""
    gan = export = None
    if "mri" in cfg.detectors:
        gan = st.run("gan", {"mri_df": mri_df["fingerprint"], "gan": models.gan_settings(cfg)},
                     lambda f: models.gan_stage(cfg, mri_df["root"], f))
        export = st.run("export", {"gan": gan["fingerprint"]},
                        lambda f: models.export_stage(gan["checkpoint"], f))
    detectors = {
        "plain": st.run("detector_plain", {"mri_df": mri_df["fingerprint"],
                                           "detector": models.detector_settings(cfg, "plain")},
                        lambda f: models.detector_stage(cfg, "plain", mri_df["root"], f, log=log))}
    if export is not None:
        detectors["mri"] = st.run(
            "detector_mri", {"mri_df": mri_df["fingerprint"], "export": export["fingerprint"],
                             "detector": models.detector_settings(cfg, "mri")},
            lambda f: models.detector_stage(cfg, "mri", mri_df["root"], f,
                                            export["generator"], log=log))
    return gan, export, detectors


def labelled_stage(cfg: BenchmarkConfig, st: Stages, log=_log.info) -> dict:
    """The face set of the ``--labelled`` videos (no originals needed)."""
    return st.run("faces_labelled", {"labelled": file_hash(cfg.labelled),
                                     **data.face_set_settings(cfg)},
                  lambda f: data.face_set_stage(cfg, cfg.labelled, f, log=log))


def eval_stages(cfg: BenchmarkConfig, st: Stages, export: dict | None, detectors: dict,
                face_sets: dict, heldout: dict | None, log=_log.info) -> tuple[dict, dict | None]:
    """``eval_<detector>`` for each trained detector, and with the GAN ``eval_mri_mean`` and
    ``gan_quality`` (on ``heldout``): the video rule chosen on ``face_sets["validation"]``
    only, then applied to every other face set. Returns ({row: result}, quality or None)."""
    tests = {k: v for k, v in face_sets.items() if k != "validation"}
    evals = {}
    for det, trained in detectors.items():
        gen = export["generator"] if det == "mri" else ""
        settings = {"detector": trained["fingerprint"], "evaluate": to_dict(cfg.evaluate),
                    "faces": {k: v["fingerprint"] for k, v in face_sets.items()},
                    "export": export["fingerprint"] if gen else None}
        evals[det] = st.run(f"eval_{det}", settings,
                            lambda f, t=trained, g=gen: evaluation.eval_stage(
                                cfg, t["checkpoint"], face_sets["validation"], tests, f, g,
                                log=log))
    if export is None:
        return evals, None
    evals["mri_mean"] = st.run(
        "eval_mri_mean", {"export": export["fingerprint"], "evaluate": to_dict(cfg.evaluate),
                          "faces": {k: v["fingerprint"] for k, v in face_sets.items()},
                          "aggregation": to_dict(generator_score.aggregation(cfg))},
        lambda f: generator_score.mri_mean_stage(cfg, export["generator"],
                                                 face_sets["validation"], tests, f, log=log))
    quality = None
    if heldout is not None:
        quality = st.run("gan_quality", {"export": export["fingerprint"],
                                         "heldout": heldout["fingerprint"]},
                         lambda f: evaluation.gan_quality_stage(cfg, export["generator"],
                                                                heldout["root"], f))
    return evals, quality


def check_inputs(cfg: BenchmarkConfig, out: str | Path) -> Path:
    """The pairs / labelled CSVs exist and ``out`` is a writable folder outside them."""
    if not cfg.sources and (not cfg.pairs or not Path(cfg.pairs).is_file()):
        raise BenchmarkError("pairs CSV not found (give --pairs, or `sources:` in --config)",
                             cfg.pairs or None)
    if cfg.labelled and not Path(cfg.labelled).is_file():
        raise BenchmarkError("labelled CSV not found", cfg.labelled)
    inputs = ([cfg.pairs] if cfg.pairs and not cfg.sources else []) + [
        s.root for s in cfg.sources] + ([cfg.labelled] if cfg.labelled else [])
    out = check_output_dir(out, inputs)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return out


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, *, restart: bool = False,
                  log=_log.info) -> dict:
    if "mri" not in cfg.detectors:
        raise BenchmarkError("detectors without 'mri' (no GAN) is for the grouped k-fold "
                             "(--folds K) only: the single split's report shows the GAN", None)
    out = check_inputs(cfg, out)
    st = Stages(out, restart=restart, log=log)
    split, mri_df, heldout = data_stages(cfg, st, log=log)
    gan, export, detectors = train_stages(cfg, st, mri_df, log=log)
    fs_settings = data.face_set_settings(cfg)
    face_sets = {
        "validation": st.run("faces_validation", {"split": split["fingerprint"], **fs_settings},
                             lambda f: data.face_set_stage(cfg, split["val_csv"], f, log=log)),
        "test": st.run("faces_test", {"split": split["fingerprint"], **fs_settings},
                       lambda f: data.face_set_stage(cfg, split["test_csv"], f, log=log)),
    }
    if cfg.labelled:
        face_sets["labelled"] = labelled_stage(cfg, st, log=log)
    evals, quality = eval_stages(cfg, st, export, detectors, face_sets, heldout, log=log)
    summary = {"name": cfg.name, "what": WHAT,
               "table": report.table_rows(evals, face_sets),
               "evaluations": {k: {kk: v[kk] for kk in ("aggregation", "test_sets")}
                               for k, v in evals.items()},
               "gan_quality": {k: v for k, v in quality.items() if k != "fingerprint"},
               "splits": split["splits"],
               "face_sets": {k: {kk: vv for kk, vv in v.items() if kk != "fingerprint"}
                             for k, v in face_sets.items()},
               "gan": {k: v for k, v in gan.items() if k != "fingerprint"}}
    st.run("report", {"results": {k: v["fingerprint"] for k, v in
                                  {**evals, "gan_quality": quality}.items()}},
           lambda f: report.write_report(f, summary))
    summary["out"] = str(out / "report")
    summary["timings"] = st.timings
    return summary


__all__ = ["WHAT", "run_benchmark"]
