"""JSON manifests through the real CLI (issue 11 §5): a `{"entries": [...]}` document on
one line, as `json.dump` writes it, runs; JSON Lines values of the wrong type are refused
with the line number, in one sentence, before any task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import error_lines


def test_a_one_line_entries_document_runs(cli, s3, bucket, tmp_path: Path) -> None:
    dst = f"{bucket}-dst"
    s3.create_bucket(Bucket=dst)
    for k in ("a.txt", "b b.txt"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    doc = {"entries": [{"url": f"s3://{bucket}/a.txt"},
                       {"url": f"s3://{bucket}/b b.txt",
                        "destination": {"bucket": dst, "key": "renamed.txt"}}]}
    m = tmp_path / "m.json"
    with open(m, "w") as f:
        json.dump(doc, f)  # one line, no final newline
    assert "\n" not in m.read_text()
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"s3://{dst}",
               "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2, job
    assert s3.get_object(Bucket=dst, Key="a.txt")["Body"].read() == b"a.txt"
    assert s3.get_object(Bucket=dst, Key="renamed.txt")["Body"].read() == b"b b.txt"


@pytest.mark.parametrize("line, problem", [
    ('{"url": "s3://BUCKET/k", "versionId": 7}', '"versionId" must be a string, not int 7'),
    ('{"url": "s3://BUCKET/k", "destination": {"bucket": "d", "key": 5}}',
     '"destination.key" must be a string, not int 5'),
    ('{"url": ["s3://BUCKET/k"]}', '"url" must be a string, not list'),
])
def test_json_lines_values_of_the_wrong_type_are_one_sentence_with_the_line(
        cli, s3, bucket, tmp_path: Path, line: str, problem: str) -> None:
    s3.put_object(Bucket=bucket, Key="first", Body=b"1")
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"url": f"s3://{bucket}/first"}) + "\n\n"
                 + line.replace("BUCKET", bucket) + "\n")
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "t=1",
               "--no-progress")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert problem in lines[0] and "line 3" in lines[0] and "m.jsonl" in lines[0], lines[0]
    assert s3.get_object_tagging(Bucket=bucket, Key="first")["TagSet"] == []  # no task ran
