"""An operator's mistake gets one line naming the setting or argument, exit 2, no traceback, and nothing written."""

from pathlib import Path

import pytest

from lakehouse.app.cli import main

# Every command, with what it needs to get past argument parsing to its settings.
COMMANDS = {
    "run": ["run"],
    "status": ["status"],
    "generate": ["generate", "--start", "2025-01-01", "--days", "1", "--events-per-day", "5", "--seed", "1"],
    "demo": ["demo", "--days", "1", "--events-per-day", "5"],
    "maintain": ["maintain"],
    "ui": ["ui"],
    "backfill": ["backfill", "--from", "2025-01-01", "--to", "2025-01-02"],
}


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, with DAGSTER_HOME and LAKEHOUSE_ROOT pointing inside it (restored afterwards)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("DAGSTER_HOME", str(cwd / "dagster_home"))
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(cwd / "root"))  # the CLI exports the root it uses; monkeypatch restores it
    return cwd


def mistake(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in process; return its one stderr line after checking the exit code and that nothing else was said."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's way out
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def assert_nothing_written(place: Path, *allowed: str) -> None:
    assert sorted(p.name for p in place.iterdir()) == sorted(allowed)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("env", "text", "rule"),
    [
        ("LAKEHOUSE_MAX_REJECTED_FRACTION", "abc", "a number within [0, 1]"),  # not a number
        ("LAKEHOUSE_ALLOWED_LATENESS_DAYS", "-1", "a whole number >= 0"),  # out of range
        ("LAKEHOUSE_SCHEMA_COMPATIBILITY", "sideways", "one of backward, forward, full, none"),  # unknown policy
        ("LAKEHOUSE_PARTITIONS_START", "2026-02-30", "a real date YYYY-MM-DD"),  # impossible date
    ],
    ids=["not-a-number", "out-of-range", "unknown-policy", "impossible-date"],
)
def test_a_bad_setting_stops_every_command_before_it_writes(
    place: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, env: str, text: str, rule: str
) -> None:
    monkeypatch.setenv(env, text)
    assert mistake(COMMANDS[command], capsys) == f"lakehouse: {env} must be {rule}, got {text!r}"
    assert_nothing_written(place)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_root_that_is_a_file_is_named_as_the_option(place: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    (place / "afile").write_text("not a folder\n")
    line = mistake([*COMMANDS[command], "--root", "afile"], capsys)
    assert line == "lakehouse: --root must be a folder or an object-store URI, not an existing file, got 'afile'"
    assert_nothing_written(place, "afile")
    assert (place / "afile").read_text() == "not a folder\n"


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["run", "--arrival-date", "2026-02-30"], "--arrival-date"),
        (["generate", "--start", "2025-13-01", "--days", "1", "--events-per-day", "5", "--seed", "1"], "--start"),
        (["demo", "--start", "2025-02-29"], "--start"),
        (["backfill", "--from", "2025-04-31", "--to", "2025-05-01"], "--from"),
        (["backfill", "--from", "2025-01-01", "--to", "yesterday"], "--to"),
    ],
    ids=["arrival-date", "generate-start", "demo-start", "backfill-from", "backfill-to"],
)
def test_an_impossible_date_names_the_argument(
    place: Path, capsys: pytest.CaptureFixture[str], argv: list[str], argument: str
) -> None:
    line = mistake(argv, capsys)
    bad = argv[argv.index(argument) + 1]
    assert line == f"lakehouse {argv[0]}: argument {argument}: must be a real date YYYY-MM-DD, got {bad!r}"
    assert_nothing_written(place)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["run", "--max-rejected-fraction", "lots"],
            "argument --max-rejected-fraction: must be a number within [0, 1], got 'lots'",
        ),
        (
            ["run", "--max-rejected-fraction", "1.5"],
            "argument --max-rejected-fraction: must be a number within [0, 1], got '1.5'",
        ),
        (["maintain", "--retention-hours", "-1"], "argument --retention-hours: must be a number >= 0, got '-1'"),
    ],
    ids=["not-a-number", "out-of-range", "negative-retention"],
)
def test_an_option_overriding_a_setting_is_checked_by_the_settings_rule(
    place: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert mistake(argv, capsys) == f"lakehouse {argv[0]}: {expected}"
    assert_nothing_written(place)
