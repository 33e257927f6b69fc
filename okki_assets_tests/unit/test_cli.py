"""The okki-assets command line: a user's mistake ends in one line from argparse, not a traceback.

- Counts that make no sense (``--days 0``, ``--partitions 0``, ``--companies -5``) and more
  partitions than the data set has days are refused before anything starts: exit code 2, the
  usage, then one ``error:`` line naming the option.
- ``--help`` shows every option's default; ``simulate --help`` describes each option; the fault
  profiles are listed in one order in every command.
- A port past 65535 (or below 1 where 0 means nothing), a --project-dir that does not exist,
  an unknown option before the command, and no command at all: one line naming the mistake.
- The installed command holds what a user runs (demo, dev, simulate, replay); the benchmark and
  the soak run from the repository (``python -m benchmarks.bench`` / ``benchmarks.soak``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from okki_assets.cli import build_parser, main


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("usage: "), captured.err
    errors = [line for line in lines if "error:" in line]
    assert errors == [lines[-1]], captured.err  # exactly one error line, the last one
    return lines[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # no day of history: nothing to generate or sync
        (
            ["demo", "--days", "0"],
            "okki-assets demo: error: argument --days: '0' is not a whole number of at least 1",
        ),
        # nothing to sync
        (
            ["demo", "--partitions", "0"],
            "okki-assets demo: error: argument --partitions: '0' is not a whole number"
            " of at least 1",
        ),
        # a negative data set
        (
            ["demo", "--companies", "-5"],
            "okki-assets demo: error: argument --companies: '-5' is not a whole number"
            " of at least 1",
        ),
        # not a number at all
        (
            ["demo", "--companies", "many"],
            "okki-assets demo: error: argument --companies: 'many' is not a whole number"
            " of at least 1",
        ),
        # more partitions than days in the data set: the extra days would be synced empty
        (
            ["demo", "--days", "5", "--partitions", "9"],
            "okki-assets demo: error: --partitions 9 is more than --days 5:"
            " the data set holds only 5 days",
        ),
        # the same rules for the other commands that build a data set
        (
            ["simulate", "--days", "0"],
            "okki-assets simulate: error: argument --days: '0' is not a whole number of at least 1",
        ),
        (
            ["dev", "--companies", "0"],
            "okki-assets dev: error: argument --companies: '0' is not a whole number of at least 1",
        ),
        (
            ["dev", "--deleted", "-1"],
            "okki-assets dev: error: argument --deleted: '-1' is not a whole number of at least 0",
        ),
        (
            ["dev", "--days", "3", "--partitions", "4"],
            "okki-assets dev: error: --partitions 4 is more than --days 3:"
            " the data set holds only 3 days",
        ),
    ],
)
def test_a_senseless_count_is_one_line_from_argparse(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _refused(argv, capsys) == message


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    # argparse wraps to the terminal width; join the lines so phrases can be searched.
    return re.sub(r"\s+", " ", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        ("demo", ["--companies COMPANIES companies in the data set (default: 3000)",
                  "--days DAYS days of history in the data set (default: 14)",
                  "--partitions PARTITIONS most recent partitions to sync (default: 7)",
                  "(default: moderate)", "--seed SEED", "(default: 7)", "(default: .)"]),
        ("simulate", ["(default: 3000)", "(default: 14)", "(default: 8801)", "(default: 8802)",
                      "(default: none)", "(default: 7)"]),
        ("dev", ["(default: 3000)", "(default: 14)", "(default: 0)", "(default: moderate)",
                 "(default: 5)", "(default: 127.0.0.1)", "(default: 3000)", "(default: .)"]),
    ],
)  # fmt: skip
def test_help_shows_the_defaults(
    command: str, defaults: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(command, capsys)
    for default in defaults:
        assert default in text, (default, text)


def test_simulate_help_describes_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("simulate", capsys)
    for option in ("--companies", "--days", "--okki-port", "--target-port", "--faults", "--seed"):
        described = re.search(re.escape(option) + r" \S+ ([a-z][^(]+?) \(default", text)
        assert described, (option, text)


def test_the_fault_profiles_are_listed_in_one_order(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("demo", "simulate", "dev"):
        assert "--faults {none,moderate,heavy}" in _help(command, capsys), command


def test_the_installed_command_has_no_bench_or_soak() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == ["demo", "dev", "replay", "simulate"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # past the last TCP port: the simulator would print its banner, then a traceback
        (
            ["simulate", "--okki-port", "99999"],
            "okki-assets simulate: error: argument --okki-port: '99999' is not a port: 1 to 65535",
        ),
        # a negative port for the UI: dg dev would log an error and wait for ever
        (
            ["dev", "--port", "-5"],
            "okki-assets dev: error: argument --port: '-5' is not a port: 1 to 65535",
        ),
        # the simulators' ports may be 0 (a free one), not past 65535
        (
            ["dev", "--target-port", "70000"],
            "okki-assets dev: error: argument --target-port: '70000' is not a port:"
            " 0 to 65535 (0: a free one)",
        ),
        # a typo in the folder: it is not created silently with a new world in it
        (
            ["dev", "--project-dir", "/nonexistent/dir"],
            "okki-assets dev: error: argument --project-dir: '/nonexistent/dir' does not exist:"
            " create it first, or pick another",
        ),
        (
            ["demo", "--project-dir", "/nonexistent/dir"],
            "okki-assets demo: error: argument --project-dir: '/nonexistent/dir' does not exist:"
            " create it first, or pick another",
        ),
        # an unknown option before any command is named as such, not as a missing command
        (["--bogus"], "okki-assets: error: unrecognized arguments: --bogus"),
        (["demo", "--bogus"], "okki-assets: error: unrecognized arguments: --bogus"),
        # no command at all: the commands are named
        (
            [],
            "okki-assets: error: name a command: demo, simulate, replay, dev"
            " (okki-assets COMMAND --help for its options)",
        ),
    ],
)
def test_a_bad_port_folder_or_option_is_one_line_from_argparse(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _refused(argv, capsys) == message


def test_a_project_dir_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    line = _refused(["dev", "--project-dir", str(a_file)], capsys)
    assert line.endswith(f"'{a_file}' is not a folder: create it first, or pick another")
    assert a_file.read_text() == "not a folder"
