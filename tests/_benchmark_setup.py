"""Shared set-up of the benchmark tests (single split and grouped k-fold): the tiny settings
that make a run take seconds, and the labelled-video list both score."""

from __future__ import annotations

from pathlib import Path

#: ``--set`` items shrinking every stage of a ``--preset cpu`` benchmark to seconds
TINY = [
    "data.every=100", "data.max_frames=2", "data.size=64", "data.max_side=480",
    "data.max_faces=4",
    "gan.set.model.image_size=32", "gan.set.model.ngf=8", "gan.set.model.ndf=8",
    "gan.set.train.max_steps=2", "gan.set.train.eval_every=2",
    "gan.set.train.checkpoint_every=2", "gan.set.data.eval_samples=4",
    "detector.set.data.image_size=32", "detector.set.train.epochs=1",
    "detector.set.train.max_steps=2", "evaluate.bootstrap=20",
]


def labelled_pair_csv(shared_data, folder) -> Path:
    """Two of the labelled videos without originals (a real and a fake clip of one person),
    listed by absolute path in ``folder/lists/labelled.csv``: the media stay where they are."""
    wild = Path(shared_data) / "labelled_unpaired" / "in_the_wild"
    (Path(folder) / "lists").mkdir(exist_ok=True)
    path = Path(folder) / "lists" / "labelled.csv"
    path.write_text("path,label,identity\n"
                    f"{wild / 'obama_real.mp4'},real,wild_obama\n"
                    f"{wild / 'obama_fake.mp4'},fake,wild_obama\n")
    return path
