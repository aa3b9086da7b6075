"""verify, copy --verify and copy --skip-unchanged with a user's manifest (issue 14 §1-2),
through the real CLI, against the S3 server on loopback and local folders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from helpers import (
    decoded_keys,
    error_lines,
    job_id_of,
    read_report,
    report_manifest_path,
    write_manifest,
)


def _run(cli, manifest: Path, *extra: str):  # type: ignore[no-untyped-def]
    proc = cli("run", "--manifest", str(manifest), "--json", "--no-progress", "--workers",
               "1", "--chunk-size", "2", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _rows_by_key(cli, proc) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    keys = decoded_keys(rows)
    assert len(keys) == len(set(keys)), "a row twice in the report"
    return dict(zip(keys, rows, strict=True))


def _outcomes(cli, proc) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    """key -> (taskStatus, errorCode)."""
    return {k: (r[3], r[5]) for k, r in _rows_by_key(cli, proc).items()}


# -- verify ------------------------------------------------------------------------------

KEYS = ["same", "same size other bytes", "longer", "gone", "dir/with space+plus"]


def _put_both(s3, src: str, dst: str) -> None:  # type: ignore[no-untyped-def]
    for k in KEYS:
        s3.put_object(Bucket=src, Key=k, Body=f"body of {k}".encode())
        s3.put_object(Bucket=dst, Key=k, Body=f"body of {k}".encode())


def _alter_behind_our_back(s3, dst: str) -> None:  # type: ignore[no-untyped-def]
    original = f"body of {KEYS[1]}".encode()
    s3.put_object(Bucket=dst, Key=KEYS[1], Body=original.upper())  # same size
    s3.put_object(Bucket=dst, Key=KEYS[2], Body=b"body of longer, and more")
    s3.delete_object(Bucket=dst, Key=KEYS[3])


@pytest.mark.parametrize("mode,same_size_code", [("etag", "ETagMismatch"),
                                                 ("checksum", "ChecksumMismatch")])
def test_verify_s3_names_the_property_that_differs(cli, s3, bucket, tmp_path, mode,
                                                   same_size_code) -> None:
    dst = bucket + "-copy"
    s3.create_bucket(Bucket=dst)
    _put_both(s3, bucket, dst)
    _alter_behind_our_back(s3, dst)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in KEYS])
    proc = _run(cli, m, "--operation", "verify", "--target", f"s3://{dst}", "--compare", mode)
    assert proc.returncode == 1, proc.stderr  # completed, some tasks failed
    assert _outcomes(cli, proc) == {
        "same": ("succeeded", ""), "dir/with space+plus": ("succeeded", ""),
        "same size other bytes": ("failed", same_size_code),
        "longer": ("failed", "SizeMismatch"), "gone": ("failed", "TargetMissing")}
    # Nothing was copied: the altered target is as it was.
    assert s3.get_object(Bucket=dst, Key="longer")["Body"].read() == b"body of longer, and more"


def test_verify_size_mode_is_blind_to_same_size_changes(cli, s3, bucket, tmp_path) -> None:
    dst = bucket + "-copy"
    s3.create_bucket(Bucket=dst)
    _put_both(s3, bucket, dst)
    _alter_behind_our_back(s3, dst)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in KEYS])
    proc = _run(cli, m, "--operation", "verify", "--target", f"s3://{dst}", "--compare", "size")
    assert _outcomes(cli, proc)["same size other bytes"] == ("succeeded", "")
    assert _outcomes(cli, proc)["longer"] == ("failed", "SizeMismatch")


def test_verify_failed_part_is_the_manifest_to_copy_again(cli, tmp_path) -> None:
    """Local folders: the failed rows are exactly the altered objects, with the HTTP
    status and a sentence naming the property; target older in size+mtime mode."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for k in ("a", "b", "c", "d"):
        (src / k).write_bytes(b"12345")
        (dst / k).write_bytes(b"12345")
    (dst / "b").write_bytes(b"123456")
    (dst / "c").unlink()
    old = time.time() - 3600
    os.utime(dst / "d", (old, old))  # the copy is older than its source
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in "abcd"])
    proc = _run(cli, m, "--operation", "verify", "--target", f"file://{dst}", "--compare",
                "size+mtime")
    rows = _rows_by_key(cli, proc)
    assert [rows[k][3:6] for k in "abcd"] == [
        ["succeeded", "200", ""], ["failed", "412", "SizeMismatch"],
        ["failed", "404", "TargetMissing"], ["failed", "412", "TargetOlder"]]
    assert "6 bytes" in rows["b"][6] and "5" in rows["b"][6]
    # With the default mode (etag: folders have no MD5 ETag, so sizes decide) d passes.
    again = _run(cli, m, "--operation", "verify", "--target", f"file://{dst}")
    assert _outcomes(cli, again)["d"] == ("succeeded", "")


def test_verify_checksum_between_folders_reads_the_bytes(cli, tmp_path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "x").write_bytes(b"hello world")
    (dst / "x").write_bytes(b"hello WORLD")
    (src / "y").write_bytes(b"same")
    (dst / "y").write_bytes(b"same")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "x"), (f"file://{src}", "y")])
    proc = _run(cli, m, "--operation", "verify", "--target", f"file://{dst}", "--compare",
                "checksum")
    assert _outcomes(cli, proc) == {"x": ("failed", "ChecksumMismatch"),
                                    "y": ("succeeded", "")}


@pytest.mark.parametrize("flags,sentence", [
    (("--operation", "verify", "--compare", "md5"), "--compare must be one of"),
    (("--operation", "verify"), "needs --target"),
    (("--operation", "noop", "--verify"), "--verify applies to --operation copy"),
    (("--operation", "noop", "--compare", "size"), "--compare applies to"),
    (("--operation", "put-tagging", "--tag", "a=b", "--skip-unchanged", "size"),
     "--skip-unchanged applies to --operation copy"),
    (("--operation", "copy", "--target", "file:///tmp/x", "--skip-unchanged", "newer"),
     "--skip-unchanged must be one of"),
])
def test_bad_comparison_flags_are_one_sentence(cli, tmp_path, flags, sentence) -> None:
    m = write_manifest(tmp_path / "m.csv", [(f"file://{tmp_path}", "k")])
    if "--target" not in flags and flags[1] == "verify":
        proc = cli("run", "--from-listing", f"file://{tmp_path}", *flags)
    else:
        proc = cli("run", "--manifest", str(m), *flags)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and sentence in lines[0], proc.stderr
    assert not (cli.home / "jobs").exists() or not list((cli.home / "jobs").iterdir())


# -- copy --verify ----------------------------------------------------------------------

def test_copy_verify_fails_a_copy_that_does_not_match(cli, tmp_path) -> None:
    """A source last modified in the future: every copy is older than its source, which
    size+mtime verification catches after the copy (plain copy calls it a success)."""
    src = tmp_path / "src"
    src.mkdir()
    for k in ("now", "future"):
        (src / k).write_bytes(k.encode())
    ahead = time.time() + 86400
    os.utime(src / "future", (ahead, ahead))
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in ("now", "future")])
    plain = _run(cli, m, "--operation", "copy", "--target", f"file://{tmp_path / 'a'}")
    assert plain.returncode == 0, plain.stderr
    checked = _run(cli, m, "--operation", "copy", "--target", f"file://{tmp_path / 'b'}",
                   "--verify", "--compare", "size+mtime")
    assert checked.returncode == 1, checked.stderr
    assert _outcomes(cli, checked) == {"now": ("succeeded", ""),
                                       "future": ("failed", "TargetOlder")}


def test_copy_verify_s3_to_s3_succeeds_when_the_copies_match(cli, s3, bucket, tmp_path):
    dst = bucket + "-v"
    s3.create_bucket(Bucket=dst)
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode() * 100)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in KEYS])
    proc = _run(cli, m, "--operation", "copy", "--target", f"s3://{dst}", "--verify",
                "--compare", "checksum")
    assert proc.returncode == 0, proc.stderr
    assert set(_outcomes(cli, proc).values()) == {("succeeded", "")}
    for k in KEYS:
        assert s3.get_object(Bucket=dst, Key=k)["Body"].read() == k.encode() * 100
    job = json.loads(proc.stdout)["Job"]
    # Amazon's shape of the operation carries none of our members.
    assert job["Operation"] == {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{dst}"}}


# -- copy --skip-unchanged with a user's manifest -----------------------------------------

def test_skip_unchanged_per_task_reports_unchanged(cli, s3, bucket, tmp_path) -> None:
    dst = bucket + "-dst"
    s3.create_bucket(Bucket=dst)
    keys = ["kept", "grew", "new one", "rewritten"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"v1 " + k.encode())
    for k in ("kept", "grew", "rewritten"):
        s3.put_object(Bucket=dst, Key=k, Body=b"v1 " + k.encode())
    s3.put_object(Bucket=bucket, Key="grew", Body=b"v2, longer: grew")
    s3.put_object(Bucket=bucket, Key="rewritten", Body=b"V1 rewritten")  # same size
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    proc = _run(cli, m, "--operation", "copy", "--target", f"s3://{dst}", "--skip-unchanged",
                "etag")
    assert proc.returncode == 0, proc.stderr
    rows = _rows_by_key(cli, proc)
    assert len(rows) == len(keys)  # one row per manifest row
    assert {k: (r[3], r[6]) for k, r in rows.items()} == {
        "kept": ("succeeded", "unchanged (etag): not copied"),
        "grew": ("succeeded", "Successful"), "new one": ("succeeded", "Successful"),
        "rewritten": ("succeeded", "Successful")}
    for k in keys:
        assert s3.get_object(Bucket=dst, Key=k)["Body"].read() == \
            s3.get_object(Bucket=bucket, Key=k)["Body"].read()
    # A second run copies nothing.
    again = _run(cli, m, "--operation", "copy", "--target", f"s3://{dst}", "--skip-unchanged",
                 "etag")
    assert {r[6] for r in _rows_by_key(cli, again).values()} == {
        "unchanged (etag): not copied"}


def test_skip_unchanged_per_task_between_folders(cli, tmp_path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for k in ("a", "b", "c"):
        (src / k).write_bytes(b"first")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in "abc"])
    assert _run(cli, m, "--operation", "copy", "--target", f"file://{dst}").returncode == 0
    (src / "b").write_bytes(b"second, longer")
    later = time.time() + 5
    (src / "c").write_bytes(b"again")  # same size, newer
    os.utime(src / "c", (later, later))
    proc = _run(cli, m, "--operation", "copy", "--target", f"file://{dst}",
                "--skip-unchanged", "size+mtime")
    messages = {k: r[6] for k, r in _rows_by_key(cli, proc).items()}
    assert messages == {"a": "unchanged (size+mtime): not copied", "b": "Successful",
                        "c": "Successful"}
    assert [(dst / k).read_bytes() for k in "abc"] == [b"first", b"second, longer", b"again"]


def test_verify_compares_the_version_the_manifest_names(cli, s3, bucket, tmp_path) -> None:
    dst = bucket + "-copy"
    s3.create_bucket(Bucket=dst)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"second, longer")["VersionId"]
    s3.put_object(Bucket=dst, Key="k", Body=b"first")  # a copy of the first version
    m = write_manifest(tmp_path / "m.csv", [(bucket, "k", v1), (bucket, "k", v2)])
    proc = _run(cli, m, "--operation", "verify", "--target", f"s3://{dst}", "--compare", "etag")
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    assert sorted((r[2], r[3], r[5]) for r in rows) == sorted(
        [(v1, "succeeded", ""), (v2, "failed", "SizeMismatch")])
