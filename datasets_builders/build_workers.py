"""Units built in several worker processes, their records handed back in unit order.

``unit_results(units, start, out, workers)`` yields ``(unit, record)`` for every unit, in the
order of ``units``, whatever the number of workers: with one worker ``start(out)`` builds them
here, one after the other; with more, each of ``workers`` spawned processes calls ``start(out)``
once and builds whole units (a unit writes its own PNGs, under names no other unit uses), and
the records come back through ``Pool.imap`` in submission order. The caller, the single writer
of records and the manifest, therefore writes exactly what a one-worker build writes.

Each worker uses one torch thread (N workers on N cores, instead of N x N threads). Spawned,
not forked: forking a process whose torch/OpenMP threads already ran can deadlock the child.
A killed build loses the units in flight (their records were never written; their PNGs are
rewritten, atomically and identically, by the resumed build). A worker whose parent is gone
(killed with -9: nothing else can stop a pool) exits within a second (``_watch_parent``): pool
workers hold both ends of their task pipe, so they would otherwise wait forever.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from datasets_builders.build_config import BuildError
from datasets_builders.build_plan import Unit

_PROCESS: Callable[[Unit], dict] | None = None


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # re-parented: the build process died
            os._exit(1)


def _init(start: Callable[[Path], Callable[[Unit], dict]], out: Path) -> None:
    import torch

    global _PROCESS
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="mrigan-parent-watch",
                     daemon=True).start()
    torch.set_num_threads(1)  # this worker's share of the cores
    _PROCESS = start(out)


def _run(unit: Unit) -> dict:
    try:
        return _PROCESS(unit)
    except Exception as exc:
        try:  # re-raised as itself in the parent when it survives the trip
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise BuildError(f"unit {unit.key}: {type(exc).__name__}: {exc}") from None
        raise


def unit_results(units: Sequence[Unit], start: Callable[[Path], Callable[[Unit], dict]],
                 out: Path, workers: int = 1) -> Iterator[tuple[Unit, dict]]:
    """``(unit, record)`` of each unit in order (see the module doc). ``start`` must pickle
    (a module-level function or a ``functools.partial`` of one) when ``workers > 1``."""
    if workers <= 1 or len(units) <= 1:
        process = start(out)
        for unit in units:
            yield unit, process(unit)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(units)), initializer=_init, initargs=(start, out)) as pool:
        yield from zip(units, pool.imap(_run, units, chunksize=1), strict=True)


__all__ = ["unit_results"]
