"""`--dry-run` checks that each source object is there and changes nothing (issue 11 §5):
a missing key is a failed row (404 NoSuchKey), not "succeeded"; a summary line says
what would be done."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import read_report, report_manifest_path, write_manifest


def _rows(cli, proc) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    job_id = json.loads(proc.stdout)["Job"]["JobId"]
    _, rows = read_report(report_manifest_path(Path(cli.home), job_id))
    return {r[1]: r for r in rows}


def test_a_dry_run_reports_missing_s3_objects_and_changes_nothing(cli, s3, bucket,
                                                                    tmp_path) -> None:
    for k in ("there-1", "there-2"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "there-1"), (bucket, "gone"),
                                            (bucket, "there-2")])
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "a=b",
               "--dry-run", "--no-progress", "--json")
    assert proc.returncode == 1, proc.stderr  # some tasks failed: the missing one
    rows = _rows(cli, proc)
    assert rows["gone"][3:6] == ["failed", "404", "NoSuchKey"], rows["gone"]
    assert {rows[k][3] for k in ("there-1", "there-2")} == {"succeeded"}
    assert all("DryRun" in rows[k][6] for k in ("there-1", "there-2"))
    assert s3.get_object_tagging(Bucket=bucket, Key="there-1")["TagSet"] == []
    summary = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "a=b",
                  "--dry-run", "--no-progress")
    assert "dry run of put-tagging: 2 objects are there" in summary.stdout, summary.stdout
    assert "1 are missing" in summary.stdout


def test_a_dry_run_of_a_delete_in_a_folder(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"1")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "keep.txt"),
                                            (f"file://{src}", "never-was.txt")])
    proc = cli("run", "--manifest", str(m), "--operation", "delete", "--dry-run",
               "--no-progress", "--json")
    assert proc.returncode == 1, proc.stderr
    rows = _rows(cli, proc)
    assert rows["keep.txt"][3] == "succeeded" and rows["never-was.txt"][3:5] == ["failed",
                                                                               "404"]
    assert (src / "keep.txt").read_bytes() == b"1"  # nothing deleted
