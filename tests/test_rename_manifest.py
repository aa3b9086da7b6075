"""A JSON Lines rename manifest with a destination on every row needs no --target
(issue 11 §5); a row without one is refused, with its row number, before any task."""

from __future__ import annotations

import json
from pathlib import Path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_row_with_a_destination_needs_no_target(cli, s3, bucket, tmp_path) -> None:
    dst = f"{bucket}-renamed"
    s3.create_bucket(Bucket=dst)
    for k in ("a.txt", "b.txt"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    m = _jsonl(tmp_path / "m.jsonl", [
        {"url": f"s3://{bucket}/a.txt", "destination": {"bucket": dst, "key": "2024/one.txt"}},
        {"url": f"s3://{bucket}/b.txt", "destination": {"bucket": dst, "key": "2024/two.txt"}},
    ])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert s3.get_object(Bucket=dst, Key="2024/one.txt")["Body"].read() == b"a.txt"
    assert s3.get_object(Bucket=dst, Key="2024/two.txt")["Body"].read() == b"b.txt"


def test_a_row_without_a_destination_and_no_target_is_refused(cli, s3, bucket,
                                                              tmp_path) -> None:
    dst = f"{bucket}-renamed"
    s3.create_bucket(Bucket=dst)
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"1")
    m = _jsonl(tmp_path / "m.jsonl", [
        {"url": f"s3://{bucket}/a.txt", "destination": {"bucket": dst, "key": "x"}},
        {"url": f"s3://{bucket}/a.txt"},
    ])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--no-progress")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("batchops:")]
    assert len(lines) == 1 and "line 2" in lines[0] and "--target" in lines[0], proc.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=dst)  # no task ran
    csv = tmp_path / "m.csv"
    csv.write_text(f"{bucket},a.txt\n")
    proc = cli("run", "--manifest", str(csv), "--operation", "copy", "--no-progress")
    assert proc.returncode == 2 and "--target" in proc.stderr, proc.stderr
