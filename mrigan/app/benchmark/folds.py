"""``mrigan benchmark --folds K``: the protocol as a grouped k-fold over identity groups.

With a handful of identity groups one held-out group is a few videos and one validation group
cannot choose anything; so every group is held out once (issue 27, goal 3):

1. ``folds`` (top level): the pairs' identity groups (union-find of every identity a unit -
   an original and its fakes - shows, the builder's own planner) are dealt to K folds, the
   largest group first to the fold with the fewest videos. For each fold its test groups are
   taken out and the rest is split again by the builder's planner (``split.val``, seeded) into
   inner *train* and *validation* groups: validation groups alone choose the GAN's and the
   detectors' checkpoints and the video rule, as in the single split.
2. Data is built once (top level): ``mri_df`` of every pair (self-blended fakes of every real
   face when ``data.self_blend_per_real`` > 0), ``faces`` (face set of every paired video) and
   ``faces_labelled``. A fold never reads them directly: its stages read *views*
   (``fold_<i>/mri_df``, ``heldout_mri_df``, ``faces_validation``, ``faces_test``): a manifest
   of the fold's rows only, next to links to the build's image folders. The training view
   lists the inner train groups (with their self-blends) and the validation groups (without);
   no row of a test group is in it.
3. Per fold (``fold_<i>/``, each stage resumable with its ``stage.json`` like the single
   split): the single split's model and evaluation stages (:mod:`.pipeline`).
4. ``report`` (top level): the out-of-fold test video scores of all folds pooled into one
   AUC (and AP, EER, accuracy of the folds' own verdicts) with a bootstrap 95% CI that
   resamples videos within each (identity group, label) stratum; the labelled videos scored by
   every fold's model, a video's pooled score the mean of its fold scores, with the same CI
   (strata: labelled identity and label); beside them each fold's own figures
   (:mod:`.pooled`).

Pooling scores of K different models assumes their video scores share a scale (all are
fractions or probabilities in [0, 1] from the same recipe); the per-fold AUCs are shown too.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from datasets_builders.build_config import BuildSourceConfig
from detectors.data import SELF_BLEND
from mrigan.app.benchmark import data, pooled
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.pipeline import check_inputs, eval_stages, labelled_stage, train_stages
from mrigan.app.benchmark.split import _describe, _plan, _rows, _write_csv, pair_sources
from mrigan.app.benchmark.stages import BenchmarkError, Stages, file_hash
from mrigan.config import to_dict
from mrigan.fileio import atomic_write_json
from mrigan.grouping import DisjointSets
from mrigan.mri_df_format import read_manifest, write_manifest

_log = logging.getLogger(__name__)

WHAT = ("Grouped k-fold over identity groups: each fold holds its test groups out of every "
        "training stage, chooses checkpoints and the video rule on inner validation groups of "
        "the rest, and scores its test groups once; the test rows pool the out-of-fold video "
        "scores of all folds (bootstrap 95% CIs: videos resampled within their identity group, "
        "and groups resampled too); the labelled rows pool, per video, the mean score of "
        "every fold's model.")


def _unit_ids(u) -> set[str]:
    return {i for it in (u.original, *u.fakes) for i in it.identities}


def identity_groups(units) -> dict[str, list]:
    """Units grouped so that units sharing an identity are together; keyed by the group's
    sorted identities joined with ``+``."""
    sets = DisjointSets()
    for u in units:
        ids = sorted(_unit_ids(u))
        for i in ids:
            sets.union(ids[0], i)
    by_root: dict[str, list] = {}
    for u in units:
        by_root.setdefault(sets.find(min(_unit_ids(u))), []).append(u)
    return {"+".join(sorted(set().union(*(_unit_ids(u) for u in us)))): us
            for us in by_root.values()}


def deal_folds(sizes: dict[str, int], k: int) -> list[list[str]]:
    """Groups (name -> videos) dealt to ``k`` folds: largest first (ties by name), each to the
    fold with the fewest videos so far (ties: the lower fold). Deterministic."""
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        i = min(range(k), key=lambda j: (load[j], j))
        folds[i].append(name)
        load[i] += sizes[name]
    return [sorted(f) for f in folds]


def folds_stage(cfg: BenchmarkConfig, folder: Path) -> dict:
    """The fold plan: groups, each fold's test / inner validation / inner train groups and the
    role of every identity; ``all.csv`` (every paired video, the data builds' input)."""
    pairs = cfg.pairs or cfg.sources[0].root
    units = [u for u in _plan(pair_sources(cfg), val=0.0, test=0.0, seed=cfg.split.seed).units
             if u.fakes]
    groups = identity_groups(units)
    k = cfg.folds
    if not 2 <= k <= len(groups) or len(groups) - -(-len(groups) // k) < 2:
        raise BenchmarkError(f"--folds {k}: needs 2 <= K <= the {len(groups)} identity groups "
                             "with fakes, and at least 2 groups (train, validation) outside each "
                             "fold's test groups", pairs)
    all_csv = folder / "all.csv"
    _write_csv(all_csv, _rows(units, folder))
    sizes = {g: sum(1 + len(u.fakes) for u in us) for g, us in groups.items()}
    plan = []
    for i, test_groups in enumerate(deal_folds(sizes, k)):
        sub = folder / f"fold_{i}"
        sub.mkdir(parents=True, exist_ok=True)
        test = [u for g in test_groups for u in groups[g]]
        rest = [u for g in sorted(groups) if g not in test_groups for u in groups[g]]
        _write_csv(sub / "trainval.csv", _rows(rest, sub))
        inner = _plan((BuildSourceConfig(kind="csv", root=str(sub / "trainval.csv")),),
                      val=cfg.split.val, test=0.0, seed=cfg.split.seed).units
        val_ids = set().union(*(_unit_ids(u) for u in inner if u.split == "val"))
        train = [u for u in rest if not _unit_ids(u) & val_ids]
        val = [u for u in rest if _unit_ids(u) & val_ids]
        if not train or not val:
            raise BenchmarkError(f"fold {i}: the groups outside its test groups "
                                 f"{test_groups} do not split into train and validation "
                                 f"groups at split.val={cfg.split.val}", pairs)
        roles = {i_: role for role, us in (("train", train), ("val", val), ("test", test))
                 for u in us for i_ in _unit_ids(u)}
        plan.append({
            "test_groups": test_groups,
            "val_groups": sorted(g for g in groups if groups[g][0] in val),
            "train_groups": sorted(g for g in groups if groups[g][0] in train),
            "splits": {"train": _describe(train), "val": _describe(val),
                       "test": _describe(test)},
            "roles": roles})
    result = {"all_csv": str(all_csv), "folds": plan,
              "groups": {g: {"identities": sorted(set().union(*(_unit_ids(u) for u in us))),
                             "videos": sizes[g]} for g, us in groups.items()}}
    atomic_write_json(folder / "folds.json", result)
    return result


def write_view(source_root: str, folder: Path, rows: list[dict]) -> str:
    """A data root of ``rows`` of another root: ``<folder>/data/manifest.csv`` plus links to
    the source root's top-level folders the rows' files lie in (nothing is copied)."""
    root = folder / "data"
    root.mkdir(parents=True, exist_ok=True)
    src = Path(source_root).resolve()
    tops = {r[c].replace("\\", "/").split("/")[0] for r in rows for c in ("image", "mri")
            if r.get(c)}
    for top in sorted(tops):
        link = root / top
        if not link.is_symlink():
            os.symlink(src / top, link)
    write_manifest(root, rows)
    return str(root)


def _role(roles: dict, row: dict, where: str) -> str:
    role = roles.get(row["identity"])
    if role is None:
        raise BenchmarkError(f"identity {row['identity']!r} of a built row is in no group of "
                             "the fold plan", where)
    return role


def mri_df_view(source: dict, roles: dict, folder: Path, *, test: bool) -> dict:
    """The fold's training MRI-DF (inner train groups with their self-blends as ``train``,
    validation groups without as ``val``) or, ``test``, its held-out one (test groups, no
    self-blends): the single split's ``mri_df`` / ``heldout_mri_df`` results."""
    rows = []
    for r in read_manifest(source["root"]):
        role = _role(roles, r, source["root"])
        blend = r.get("method") == SELF_BLEND
        if test and role == "test" and not blend:
            rows.append({**r, "split": "test"})
        elif not test and (role == "train" or (role == "val" and not blend)):
            rows.append({**r, "split": role})
    if not rows:
        raise BenchmarkError("a fold's MRI-DF view has no row", source["root"])
    counts: dict[str, dict] = {}
    for r in rows:
        c = counts.setdefault(r["split"], {"rows": 0, "fake_rows": 0, "videos": set(),
                                           "identities": set()})
        c["rows"] += 1
        c["fake_rows"] += r["label"] == "fake"
        c["videos"].add(r["video"])
        c["identities"].add(r["identity"])
    for c in counts.values():
        c["videos"], c["identities"] = len(c["videos"]), sorted(c["identities"])
    return {"root": write_view(source["root"], folder, rows), "splits": counts}


def face_view(source: dict, roles: dict, role: str, folder: Path) -> dict:
    """The videos of one role's groups from the face set of every paired video."""
    rows = [r for r in read_manifest(source["root"], require_mri=False)
            if _role(roles, r, source["root"]) == role]
    if not rows:
        raise BenchmarkError(f"no face of the fold's {role} groups in the face set",
                             source["root"])
    return {"root": write_view(source["root"], folder, rows), "split": "", "rows": len(rows),
            "videos": len({r["video"] for r in rows}),
            "fake_videos": len({r["video"] for r in rows if r["label"] == "fake"}),
            "identities": sorted({r["identity"] for r in rows})}


def fold_stages(cfg: BenchmarkConfig, st: Stages, plan: dict, i: int, built: dict,
                log=_log.info) -> dict:
    """One fold's views, models and evaluations (``fold_<i>/...``)."""
    roles = plan["folds"][i]["roles"]
    base = {"folds": plan["fingerprint"], "fold": i}
    mri_df = st.run("mri_df", {**base, "source": built["mri_df"]["fingerprint"]},
                    lambda f: mri_df_view(built["mri_df"], roles, f, test=False))
    heldout = None
    if "mri" in cfg.detectors:
        heldout = st.run("heldout_mri_df", {**base, "source": built["mri_df"]["fingerprint"]},
                         lambda f: mri_df_view(built["mri_df"], roles, f, test=True))
    gan, export, detectors = train_stages(cfg, st, mri_df, log=log)
    face_sets = {name: st.run(f"faces_{name}", {**base, "source": built["faces"]["fingerprint"]},
                              lambda f, r=role: face_view(built["faces"], roles, r, f))
                 for name, role in (("validation", "val"), ("test", "test"))}
    if "labelled" in built:
        face_sets["labelled"] = built["labelled"]
    evals, quality = eval_stages(cfg, st, export, detectors, face_sets, heldout, log=log)
    return {"evals": evals, "quality": quality, "detectors": detectors, "gan": gan,
            "face_sets": face_sets}


def run_folds(cfg: BenchmarkConfig, out: str | Path, *, restart: bool = False,
              log=_log.info) -> dict:
    out = check_inputs(cfg, out)
    bad = [d for d in cfg.detectors if d not in ("plain", "mri")] or (
        [] if "plain" in cfg.detectors else ["(plain missing)"])
    if bad:
        raise BenchmarkError(f"detectors: {bad}; expected plain, optionally mri", None)
    st = Stages(out, restart=restart, log=log)
    listing = ({"sources": [to_dict(s) for s in cfg.sources]} if cfg.sources
               else {"pairs": file_hash(cfg.pairs)})
    plan = st.run("folds", {**listing, "split": to_dict(cfg.split), "folds": cfg.folds},
                  lambda f: folds_stage(cfg, f))
    built = {
        "mri_df": st.run("mri_df", {"folds": plan["fingerprint"],
                                    **data.mri_df_settings(cfg), **data.self_blend_settings(cfg)},
                         lambda f: data.build_stage(cfg, plan["all_csv"], f, val=0.0,
                                                    self_blend=True, log=log)),
        "faces": st.run("faces", {"folds": plan["fingerprint"], **data.face_set_settings(cfg)},
                        lambda f: data.face_set_stage(cfg, plan["all_csv"], f, log=log))}
    if cfg.labelled:
        built["labelled"] = labelled_stage(cfg, st, log=log)
    folds = []
    for i in range(cfg.folds):
        fst = Stages(out / f"fold_{i}", restart=restart, log=lambda m, i=i: log(f"fold {i} {m}"))
        folds.append(fold_stages(cfg, fst, plan, i, built, log=log))
        st.timings.update({f"fold_{i}/{k}": v for k, v in fst.timings.items()})
    summary = {"name": cfg.name, "what": WHAT, "folds": cfg.folds,
               "groups": plan["groups"],
               "plan": [{k: v for k, v in f.items() if k != "roles"} for f in plan["folds"]]}
    results = st.run("report", {"evals": [{k: v["fingerprint"] for k, v in f["evals"].items()}
                                          for f in folds],
                                "bootstrap": cfg.evaluate.bootstrap, "seed": cfg.split.seed,
                                "report": 2},  # 2: with the mean-face-score AUC
                     lambda f: pooled.write_fold_report(f, summary, folds, cfg))
    return {**summary, **results, "out": str(out / "report"), "timings": st.timings}


def plan_of(out: str | Path) -> dict:
    """The ``folds.json`` of a fold run (tests and reports read the roles)."""
    return json.loads((Path(out) / "folds" / "folds.json").read_text(encoding="utf-8"))


__all__ = ["WHAT", "deal_folds", "face_view", "folds_stage", "identity_groups", "mri_df_view",
           "plan_of", "run_folds", "write_view"]
