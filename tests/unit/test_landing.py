"""Landing files: every record kept with exact bytes, lines numbered as a person counts them."""

import gzip
from datetime import date
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.staging.landing import current_batch_id, gunzip_readable_prefix, read_batch, record_lines

DAY = date(2025, 1, 10)


def write(root: Path, name: str, content: bytes) -> Path:
    folder = root / "landing" / "billing_events" / DAY.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def split_lines(content: bytes) -> list[bytes]:
    """The plain definition record_lines must agree with."""
    content = content.removeprefix(b"\xef\xbb\xbf")
    lines = content.split(b"\n") if content else []
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def test_bom_crlf_blank_lines_and_missing_final_newline_are_handled() -> None:
    lines, numbers = record_lines(b"\xef\xbb\xbfa\r\nb\n\n  \r\nc")
    assert lines.to_list() == [b"a", b"b", b"", b"  ", b"c"] and numbers.to_list() == [1, 2, None, None, 5]
    assert record_lines(b"")[0].to_list() == []
    assert record_lines(b"a\n")[0].to_list() == [b"a"]


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


def test_a_truncated_gzip_delivers_its_complete_lines_and_names_the_damage(tmp_path: Path) -> None:
    body = b"".join(b'{"n":%d}\n' % n for n in range(20_000))
    write(tmp_path, "a.jsonl.gz", gzip.compress(body)[:-5000])
    write(tmp_path, "b.jsonl", b"after\n")
    batch = read_batch(tmp_path, "billing_events", DAY)
    damaged, intact = batch.files
    assert damaged.damage is not None and "truncated gzip" in damaged.damage and intact.damage is None
    lines = batch.rows.filter(batch.rows["_source_file"] == "2025-01-10/a.jsonl.gz").get_column("_raw").to_list()
    assert 0 < len(lines) < 20_000 and lines == [b'{"n":%d}' % n for n in range(len(lines))]  # a prefix, no cut line
    assert batch.rows.get_column("_raw").to_list()[-1] == b"after"


def test_corrupt_gzip_bytes_are_reported_and_multi_member_gzip_reads_whole() -> None:
    good = gzip.compress(b"".join(b"%d\n" % n for n in range(50_000)))
    corrupt = good[:20_000] + bytes(b ^ 0xFF for b in good[20_000:20_100]) + good[20_100:]
    content, damage = gunzip_readable_prefix(corrupt)
    assert damage is not None and "corrupt gzip" in damage
    # DEFLATE notices corruption only some way after it, so only the start is known to be intact.
    assert content.endswith(b"\n") and content[:10_000] == b"".join(b"%d\n" % n for n in range(50_000))[:10_000]
    assert gunzip_readable_prefix(gzip.compress(b"a\n") + gzip.compress(b"b\n")) == (b"a\nb\n", None)


def test_batch_id_is_a_function_of_the_files_and_changes_when_one_is_added(tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl", b"1\n")
    first = read_batch(tmp_path, "billing_events", DAY).batch_id
    assert first == read_batch(tmp_path, "billing_events", DAY).batch_id == current_batch_id(tmp_path, "billing_events", DAY)
    write(tmp_path, "b.jsonl", b"2\n")
    assert read_batch(tmp_path, "billing_events", DAY).batch_id != first


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b" ", b"\t", b"{}", b"x", b"\xff", b"\xef\xbb\xbf", b"\f"]), max_size=40))
def test_vectorised_line_splitting_agrees_with_the_plain_definition(pieces: list[bytes]) -> None:
    content = b"".join(pieces)
    lines, numbers = record_lines(content)
    expected = split_lines(content)
    assert lines.to_list() == expected
    assert numbers.to_list() == [n if line.strip(b" \t\r") else None for n, line in enumerate(expected, start=1)]
