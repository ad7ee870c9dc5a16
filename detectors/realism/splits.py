"""Train / validation / test splits that keep identities and methods apart.

A realism model that has seen a person (or a face-swap tool) in training is rated too well on
it: the DFGC-VRA benchmark therefore tests on unseen identities, unseen methods, and both. Here
identities are grouped into connected components first (a face swap ``093_121`` ties ids 093
and 121 together), so a held-out person never appears in training in any role.

``mode="both"`` draws held-out identities and held-out methods once and gives the three test
sets of the 2x2 grid: ``unseen_identity`` (held-out identity, seen method), ``unseen_method``
(seen identity, held-out method), ``unseen_both``. Training keeps only the seen/seen cell.
Validation is carved out of training by identity, so model selection also looks at new people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.realism.labels import MosRecord
from mrigan.errors import MriganError
from mrigan.grouping import DisjointSets

MODES = ("identity", "method", "both")


class SplitError(MriganError, ValueError):
    """The records cannot be split as asked (e.g. a single method for a by-method split)."""


@dataclass(frozen=True)
class Split:
    """Indices into the record list. ``tests`` maps a test-set name to its indices."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    tests: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    held_out_identities: tuple[str, ...] = ()
    held_out_methods: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"train": list(self.train), "val": list(self.val),
                "tests": {k: list(v) for k, v in self.tests.items()},
                "held_out_identities": list(self.held_out_identities),
                "held_out_methods": list(self.held_out_methods)}


def identity_components(records: Sequence[MosRecord]) -> list[int]:
    """Component id per record: records sharing any identity (transitively) share a component."""
    sets = DisjointSets()
    for r in records:
        if not r.identities:
            raise SplitError(f"record {r.key!r} has no identity; cannot split by identity")
        for other in r.identities[1:]:
            sets.union(r.identities[0], other)
    roots: dict[str, int] = {}
    return [roots.setdefault(sets.find(r.identities[0]), len(roots)) for r in records]


def _draw_groups(group_of: Sequence[int], candidates: Sequence[int], fraction: float,
                 rng: np.random.Generator) -> set[int]:
    """Random groups (among ``candidates``) until they hold >= fraction of those records."""
    cand = sorted(set(candidates))
    if fraction <= 0 or len(cand) < 2:
        return set()
    sizes = {g: 0 for g in cand}
    for g in group_of:
        if g in sizes:
            sizes[g] += 1
    total = sum(sizes.values())
    chosen: set[int] = set()
    count = 0
    target = fraction * total
    for g in (int(g) for g in rng.permutation(cand)):
        if count >= target or len(chosen) == len(cand) - 1:
            break
        if chosen and count + sizes[g] - target > target - count:
            continue  # this group overshoots more than we fall short: try a smaller one
        chosen.add(g)
        count += sizes[g]
    return chosen


def make_split(
    records: Sequence[MosRecord],
    mode: str = "identity",
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    seed: int = 0,
    test_identities: Sequence[str] = (),
    test_methods: Sequence[str] = (),
    seen_methods: Sequence[str] = ("original",),
) -> Split:
    """Split ``records`` by ``mode`` (``identity``, ``method`` or ``both``).

    ``test_identities`` / ``test_methods`` fix the held-out sets instead of drawing them
    (to reproduce a published protocol). Methods in ``seen_methods`` are never held out:
    real videos anchor the top of the scale and are not a "method" to generalise to.
    """
    if mode not in MODES:
        raise SplitError(f"unknown split mode {mode!r}; known: {', '.join(MODES)}")
    if not records:
        raise SplitError("no records to split")
    rng = np.random.default_rng(seed)
    comp = identity_components(records)
    by_identity, by_method = mode in ("identity", "both"), mode in ("method", "both")

    held_comp: set[int] = set()
    if by_identity:
        if test_identities:
            wanted = set(test_identities)
            missing = wanted - {i for r in records for i in r.identities}
            if missing:
                raise SplitError(f"test identities not in the labels: {sorted(missing)}")
            held_comp = {c for c, r in zip(comp, records, strict=True) if wanted & set(r.identities)}
        else:
            held_comp = _draw_groups(comp, comp, test_fraction, rng)
        if not held_comp or len(held_comp) == len(set(comp)):
            raise SplitError(f"cannot hold out identities: {len(set(comp))} identity group(s)")

    held_methods: set[str] = set()
    if by_method:
        methods = sorted({r.method for r in records} - set(seen_methods))
        if test_methods:
            held_methods = set(test_methods)
            missing = held_methods - set(methods)
            if missing:
                raise SplitError(f"test methods not in the labels (or always seen): {sorted(missing)}")
        else:
            k = min(max(1, math.ceil(test_fraction * len(methods))), len(methods) - 1)
            if len(methods) < 2:
                raise SplitError(f"cannot hold out methods: only {methods} can be held out")
            held_methods = {str(m) for m in rng.choice(methods, size=k, replace=False)}

    cells: dict[tuple[bool, bool], list[int]] = {}
    for i, r in enumerate(records):
        cells.setdefault((comp[i] in held_comp, r.method in held_methods), []).append(i)
    pool = cells.get((False, False), [])
    tests: dict[str, tuple[int, ...]] = {}
    if mode == "identity":
        tests["unseen_identity"] = tuple(cells.get((True, False), []))
    elif mode == "method":
        tests["unseen_method"] = tuple(cells.get((False, True), []))
    else:
        tests = {"unseen_identity": tuple(cells.get((True, False), [])),
                 "unseen_method": tuple(cells.get((False, True), [])),
                 "unseen_both": tuple(cells.get((True, True), []))}
    for name, idx in tests.items():
        if len(idx) < 2:
            raise SplitError(f"test set {name!r} would hold {len(idx)} video(s); "
                             "use more data or another test_fraction")

    val_comp = _draw_groups(comp, [comp[i] for i in pool], val_fraction, rng)
    val = tuple(i for i in pool if comp[i] in val_comp)
    train = tuple(i for i in pool if comp[i] not in val_comp)
    if len(train) < 2:
        raise SplitError(f"training set would hold {len(train)} video(s)")
    held_ids = sorted({i for c, r in zip(comp, records, strict=True) if c in held_comp
                       for i in r.identities})
    return Split(train=train, val=val, tests=tests, held_out_identities=tuple(held_ids),
                 held_out_methods=tuple(sorted(held_methods)))
