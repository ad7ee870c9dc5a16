"""The command line sets up the library's logging once: progress (INFO records of the
``mrigan`` / ``detectors`` / ``datasets_builders`` loggers) on stdout, ``-q`` hides it (before or
after the subcommand), ``-v`` adds debug records, and nothing stays attached after ``main``
returns (sweeps call it many times in one process)."""

from __future__ import annotations

import logging

from mrigan.app.cli import main
from mrigan.app.logs import PACKAGES, ConsoleHandler, level_for


def test_progress_on_stdout_hidden_by_q_and_nothing_left_attached(tmp_path, ff_examples, capsys):
    csv = tmp_path / "pairs.csv"
    csv.write_text("path,label,original\n"
                   f"{ff_examples / 'ex_deepfakes.png'},fake,{ff_examples / 'ex_original.png'}\n")
    argv = ["build-dataset", "--csv", str(csv), "--out", str(tmp_path / "out"), "--size", "64",
            "--no-progress", "--set", "faces.device=cpu", "--set", "faces.max_side=320"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "pairs written: 2 (1 fake, 1 real)" in first.out  # the builder's summary (logging)
    assert "pairs written" not in first.err
    for quiet in (["-q", *argv], [*argv, "-q"]):  # resumed: the summary again, unless -q
        assert main(quiet) == 0
        assert "pairs written" not in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 built now, 1 already done" in capsys.readouterr().out  # resumed, shown again
    for name in PACKAGES:
        assert not [h for h in logging.getLogger(name).handlers if isinstance(h, ConsoleHandler)]
        assert logging.getLogger(name).level == logging.NOTSET


def test_levels():
    assert [level_for(0, 0), level_for(1, 0), level_for(0, 1), level_for(0, 2)] == [
        logging.INFO, logging.DEBUG, logging.WARNING, logging.ERROR]
