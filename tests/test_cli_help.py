"""Every `bench` sub-command prints its help (argparse formats every help string only then)."""

from __future__ import annotations

import pytest

from rlebench.cli import build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)


def test_every_documented_subcommand_exists() -> None:
    expected = {"info", "capture", "make-video", "replay", "capture-and-replay", "plot", "compare", "compare-refs"}
    assert expected | {"report"} <= set(_subcommands())


@pytest.mark.parametrize("command", [None, *_subcommands()])
def test_help_prints_without_error(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bench")
