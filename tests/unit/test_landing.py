"""Landing files: every record kept with exact bytes, lines numbered as a person counts them."""

import gzip
from datetime import date
from pathlib import Path

import pytest

from lakehouse.landing import LandingError, current_batch_id, read_batch, split_lines

DAY = date(2025, 1, 10)


def write(root: Path, name: str, content: bytes) -> Path:
    folder = root / "landing" / "billing_events" / DAY.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def test_bom_crlf_blank_lines_and_missing_final_newline_are_handled() -> None:
    assert split_lines(b"\xef\xbb\xbfa\r\nb\n\n  \r\nc") == [b"a", b"b", b"", b"  ", b"c"]
    assert split_lines(b"") == []
    assert split_lines(b"a\n") == [b"a"]


def test_blank_lines_carry_no_record_but_keep_line_numbers(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl", b'{"x":1}\n\n   \n{"x":2}')
    batch = read_batch(tmp_path, "billing_events", DAY)
    assert batch.rows.get_column("_source_line").to_list() == [1, 4]
    assert batch.files[0].line_count == 4 and batch.files[0].record_count == 2


def test_raw_bytes_are_kept_exactly_including_invalid_utf8(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl", b'{"x":"\xff"}\r\n')
    assert read_batch(tmp_path, "billing_events", DAY).rows.get_column("_raw").to_list() == [b'{"x":"\xff"}']


def test_files_are_read_in_name_order_and_gzip_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "b.jsonl", b"2\n")
    write(tmp_path, "a.jsonl.gz", gzip.compress(b"1\n"))
    write(tmp_path, "ignored.txt", b"not a landing file\n")
    rows = read_batch(tmp_path, "billing_events", DAY).rows
    assert rows.get_column("_source_file").to_list() == ["2025-01-10/a.jsonl.gz", "2025-01-10/b.jsonl"]


def test_a_truncated_gzip_fails_the_batch_loudly(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl.gz", gzip.compress(b"1\n2\n" * 1000)[:-20])
    with pytest.raises(LandingError, match="corrupt or truncated gzip"):
        read_batch(tmp_path, "billing_events", DAY)


def test_batch_id_is_a_function_of_the_files_and_changes_when_one_is_added(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl", b"1\n")
    first = read_batch(tmp_path, "billing_events", DAY).batch_id
    assert first == read_batch(tmp_path, "billing_events", DAY).batch_id == current_batch_id(tmp_path, "billing_events", DAY)
    write(tmp_path, "b.jsonl", b"2\n")
    assert read_batch(tmp_path, "billing_events", DAY).batch_id != first
