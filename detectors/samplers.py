"""Which items go into each training batch: plain shuffling, balanced epochs, fake/real pairs.

All orders are pure functions of ``(seed, epoch)`` so a resumed run replays the interrupted
epoch exactly, and every DDP rank computes the same global batches (each takes its shard).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from mrigan.mri_df_format import balanced_indices


def shuffled_indices(n: int, epoch: int, seed: int) -> list[int]:
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).tolist()


def paired_batches(labels: Sequence[int], pair_keys: Sequence[Hashable], batch_size: int,
                   epoch: int, seed: int) -> list[list[int]]:
    """Batches in which each fake sits next to the real face it was made from.

    A fake and its real share a pair key (identity, frame, track). Every fake is used once per
    epoch; its partner is its own real when the manifest has it, else a random real (DFDC has
    several fakes per original and sometimes none of the originals). Classes are therefore
    balanced without discarding fakes, and the network has to look at what differs inside a
    pair rather than at who is in the picture. ``batch_size`` is rounded down to even.
    """
    if batch_size < 2:
        raise ValueError(f"paired batches need batch_size >= 2, got {batch_size}")
    labels = np.asarray(labels)
    reals = np.flatnonzero(labels == 0)
    fakes = np.flatnonzero(labels == 1)
    if len(reals) == 0 or len(fakes) == 0:
        raise ValueError("paired batches need both real and fake items")
    rng = np.random.default_rng([int(seed), int(epoch)])
    real_of: dict[Hashable, list[int]] = defaultdict(list)
    for i in reals:
        real_of[pair_keys[i]].append(int(i))
    pairs = []
    for f in rng.permutation(fakes):
        own = real_of.get(pair_keys[f])
        partner = own[int(rng.integers(len(own)))] if own else int(rng.choice(reals))
        pairs.append((int(f), partner))
    per_batch = batch_size // 2
    batches = []
    for start in range(0, len(pairs), per_batch):
        batch = [i for pair in pairs[start:start + per_batch] for i in pair]
        batches.append(batch)
    return batches


def epoch_batches(labels: Sequence[int], pair_keys: Sequence[Hashable], *, balance: str,
                  batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    """The epoch's global batches for ``balance`` in none | weight | sample | paired."""
    if balance == "paired":
        return paired_batches(labels, pair_keys, batch_size, epoch, seed)
    if balance == "sample":
        order = balanced_indices(labels, epoch, seed)
    elif balance in ("none", "weight"):
        order = shuffled_indices(len(labels), epoch, seed)
    else:
        raise ValueError(f"unknown balance {balance!r}; use none, weight, sample or paired")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
