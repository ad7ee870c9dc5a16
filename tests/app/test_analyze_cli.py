"""One `mrigan` command line: the issue's subcommands each answer --help with the shared
--config / --set flags, and the top-level help lists every subcommand."""

from __future__ import annotations

import pytest

from mrigan.app.cli import SUBCOMMANDS
from mrigan.app.cli import main as cli

PIPELINE = ("build-dataset", "train-gan", "train-detector", "train-realism", "evaluate",
            "analyze", "demo")


@pytest.mark.parametrize("name", PIPELINE)
def test_subcommand_help_has_config_and_set(name, capsys):
    with pytest.raises(SystemExit) as stop:
        cli([name, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: mrigan {name}")
    assert "--config" in text and "--set KEY=VALUE" in text


def test_top_level_help_lists_every_subcommand(capsys):
    assert cli([]) == 2
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text
    assert set(PIPELINE) <= set(SUBCOMMANDS)
