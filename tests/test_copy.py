"""End to end: the real CLI copies objects between the S3 server and local folders."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import decoded_keys, job_id_of, read_report, report_manifest_path, write_manifest

SPECIAL_KEYS = ["plain.txt", "dir/with space.txt", "a+b=c", "100%/done", "ünïcødé/✓ ok.txt",
                "commas,in,key.csv", "quote\"d 'key'", "tilde~and(parens)!"]


def _body(key: str) -> bytes:
    return f"body of {key}\n".encode() * 3


def _put_all(s3, bucket: str, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=_body(k))


def _run_copy(cli, manifest: Path, *extra: str):  # type: ignore[no-untyped-def]
    proc = cli("run", "--manifest", str(manifest), "--operation", "copy", "--json",
               "--no-progress", "--workers", "2", "--chunk-size", "3", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _report_rows(cli, proc):  # type: ignore[no-untyped-def]
    job_id = job_id_of(proc.stdout)
    manifest, rows = read_report(report_manifest_path(cli.home, job_id))
    return job_id, manifest, rows


def test_s3_to_s3_same_bucket_with_prefix(cli, s3, bucket, tmp_path) -> None:
    _put_all(s3, bucket, SPECIAL_KEYS)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in SPECIAL_KEYS])
    proc = _run_copy(cli, m, "--target", f"arn:aws:s3:::{bucket}", "--target-key-prefix", "copies")
    assert proc.returncode == 0, proc.stderr
    for k in SPECIAL_KEYS:
        assert s3.get_object(Bucket=bucket, Key=f"copies/{k}")["Body"].read() == _body(k)
    _, manifest, rows = _report_rows(cli, proc)
    assert manifest["Format"] == "Report_CSV_20180820"
    assert sorted(decoded_keys(rows)) == sorted(SPECIAL_KEYS)
    assert {tuple(r[3:7]) for r in rows} == {("succeeded", "200", "", "Successful")}


def test_s3_to_s3_across_buckets_keeps_content_type_and_metadata(cli, s3, bucket, tmp_path):
    dst = bucket + "-dst"
    s3.create_bucket(Bucket=dst)
    s3.put_object(Bucket=bucket, Key="doc.html", Body=b"<p>hi</p>", ContentType="text/html",
                  Metadata={"owner": "alice"})
    _put_all(s3, bucket, SPECIAL_KEYS)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in ["doc.html", *SPECIAL_KEYS]])
    proc = _run_copy(cli, m, "--target", f"s3://{dst}")
    assert proc.returncode == 0, proc.stderr
    head = s3.head_object(Bucket=dst, Key="doc.html")
    assert head["ContentType"] == "text/html" and head["Metadata"] == {"owner": "alice"}
    for k in SPECIAL_KEYS:
        assert s3.get_object(Bucket=dst, Key=k)["Body"].read() == _body(k)


def test_s3_to_local_and_back(cli, s3, bucket, tmp_path) -> None:
    _put_all(s3, bucket, SPECIAL_KEYS)
    out = tmp_path / "out"
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in SPECIAL_KEYS])
    proc = _run_copy(cli, m, "--target", f"file://{out}")
    assert proc.returncode == 0, proc.stderr
    for k in SPECIAL_KEYS:
        assert (out / k).read_bytes() == _body(k)

    back = bucket + "-back"
    s3.create_bucket(Bucket=back)
    m2 = write_manifest(tmp_path / "m2.csv", [("local", k) for k in SPECIAL_KEYS])
    proc = _run_copy(cli, m2, "--bucket-map", f"local=file://{out}", "--target", back,
                     "--target-key-prefix", "restored/")
    assert proc.returncode == 0, proc.stderr
    for k in SPECIAL_KEYS:
        assert s3.get_object(Bucket=back, Key=f"restored/{k}")["Body"].read() == _body(k)
    _, _, rows = _report_rows(cli, proc)
    assert sorted(decoded_keys(rows)) == sorted(SPECIAL_KEYS)
    assert {r[0] for r in rows} == {"local"}


def test_local_to_local(cli, tmp_path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    keys = [f"d{i % 3}/f {i}.bin" for i in range(20)]
    for k in keys:
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_bytes(_body(k))
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = _run_copy(cli, m, "--target", f"file://{dst}")
    assert proc.returncode == 0, proc.stderr
    assert all((dst / k).read_bytes() == _body(k) for k in keys)
    # A hard link would let a later write to the target change the source.
    assert (dst / keys[0]).stat().st_ino != (src / keys[0]).stat().st_ino


def test_versioned_source_is_copied_by_version_id(cli, s3, bucket, tmp_path) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"version one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="doc", Body=b"version two")
    out = tmp_path / "out"
    m = write_manifest(tmp_path / "m.csv", [(bucket, "doc", v1)])
    proc = _run_copy(cli, m, "--target", f"file://{out}")
    assert proc.returncode == 0, proc.stderr
    assert (out / "doc").read_bytes() == b"version one"
    _, _, rows = _report_rows(cli, proc)
    assert rows == [[bucket, "doc", v1, "succeeded", "200", "", "Successful"]]


def test_json_manifest_destinations_rename(cli, s3, bucket, tmp_path) -> None:
    _put_all(s3, bucket, ["a", "b"])
    out = tmp_path / "out"
    lines = [{"url": f"s3://{bucket}/a", "destination": {"bucket": "out", "key": "renamed/A"}},
             {"url": f"s3://{bucket}/b", "destination": {"bucket": "out", "key": "renamed/B"}}]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(x) + "\n" for x in lines))
    proc = _run_copy(cli, m, "--bucket-map", f"out=file://{out}", "--target", f"file://{out}")
    assert proc.returncode == 0, proc.stderr
    assert (out / "renamed/A").read_bytes() == _body("a")
    assert (out / "renamed/B").read_bytes() == _body("b")


def test_missing_objects_fail_with_404_and_are_not_retried(cli, s3, bucket, tmp_path) -> None:
    _put_all(s3, bucket, ["here"])
    m = write_manifest(tmp_path / "m.csv", [(bucket, "here"), (bucket, "gone")])
    proc = _run_copy(cli, m, "--target", f"file://{tmp_path / 'out'}", "--max-attempts", "5")
    assert proc.returncode == 1, proc.stderr  # completed, some tasks failed
    job_id, manifest, rows = _report_rows(cli, proc)
    failed = [r for r in rows if r[3] == "failed"]
    assert failed == [[bucket, "gone", "", "failed", "404", "NoSuchKey",
                       "The specified key does not exist."]]
    statuses = sorted(p["TaskExecutionStatus"] for p in manifest["Results"])
    assert statuses == ["failed", "succeeded"]
    job = json.loads(proc.stdout)["Job"]
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksFailed"] == 1
    # FailedTasksOnly: only the failure is reported.
    proc = _run_copy(cli, m, "--target", f"file://{tmp_path / 'out'}",
                     "--report-scope", "FailedTasksOnly")
    _, manifest, rows = _report_rows(cli, proc)
    assert [r[1] for r in rows] == ["gone"]


def test_empty_manifest_completes_with_zero_tasks(cli, tmp_path) -> None:
    m = tmp_path / "empty.csv"
    m.write_text("")
    proc = _run_copy(cli, m, "--target", f"file://{tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["Status"] == "Complete" and job["ProgressSummary"]["TotalNumberOfTasks"] == 0
    manifest, rows = read_report(report_manifest_path(cli.home, job["JobId"]))
    assert rows == [] and manifest["Results"] == []


def test_bad_manifest_line_is_named_and_nothing_runs(cli, s3, bucket, tmp_path) -> None:
    _put_all(s3, bucket, ["a", "b"])
    m = tmp_path / "bad.csv"
    m.write_text(f"{bucket},a\n{bucket},b\n{bucket},c%zz\n")
    out = tmp_path / "out"
    proc = _run_copy(cli, m, "--target", f"file://{out}")
    assert proc.returncode == 2
    # One sentence, after the line that names the job (printed before preparing starts).
    said = [line for line in proc.stderr.splitlines() if not line.startswith("job ")]
    assert f"{m}, line 3" in proc.stderr and len(said) == 1, proc.stderr
    assert not out.exists()  # nothing ran
    jobs = json.loads(cli("list-jobs", check=True).stdout)["Jobs"]
    assert [j["Status"] for j in jobs] == ["Failed"]


@pytest.mark.parametrize("args", [
    ["--operation", "replicate"],  # no target (copy without one: test_rename_manifest.py)
    ["--operation", "frobnicate", "--target", "s3://x"],
    ["--operation", "copy", "--target", "ftp://x/y"],
    ["--operation", "copy", "--target", "s3://x", "--bucket-map", "nonsense"],
    ["--operation", "copy", "--target", "s3://x", "--chunk-size", "-1"],
])
def test_bad_flags_give_one_sentence(cli, tmp_path, args) -> None:
    m = write_manifest(tmp_path / "m.csv", [("b", "k")])
    proc = cli("run", "--manifest", str(m), *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not (cli.home / "jobs").exists() or not any((cli.home / "jobs").iterdir())


def test_describe_and_list_jobs(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "k")])
    proc = _run_copy(cli, m, "--target", f"file://{tmp_path / 'out'}", "--description", "hello")
    job_id = job_id_of(proc.stdout)
    job = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    assert job["JobId"] == job_id and job["Status"] == "Complete"
    assert job["Description"] == "hello" and job["Operation"]["S3PutObjectCopy"]
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 1
    assert job["Manifest"]["Location"]["ETag"].startswith("sha256:")
    jobs = json.loads(cli("list-jobs", check=True).stdout)["Jobs"]
    assert [(j["JobId"], j["Operation"], j["Status"]) for j in jobs] == [
        (job_id, "S3PutObjectCopy", "Complete")]
    proc = cli("describe-job", "--job-id", "nope")
    assert proc.returncode == 2 and "no job 'nope'" in proc.stderr


def test_folder_copier_holds_folders_for_one_chunk_only(tmp_path) -> None:
    from batchops.storage.localfs import FolderCopier
    from batchops.storage.outcomes import TaskError

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a").write_bytes(b"first")
    (src / "d" / "b").write_bytes(b"second")
    (src / "file").write_bytes(b"x")
    copier = FolderCopier()
    assert copier.copy(str(src), "d/a", str(dst), "out/a") == 5
    assert (dst / "out" / "a").read_bytes() == b"first"
    # The destination folder is replaced by hand between two chunks: the next chunk
    # writes into the new folder, not into the deleted one it held open.
    copier.release()
    shutil.rmtree(dst / "out")
    (dst / "out").mkdir()
    copier.copy(str(src), "d/b", str(dst), "out/b")
    assert (dst / "out" / "b").read_bytes() == b"second"
    assert sorted(p.name for p in (dst / "out").iterdir()) == ["b"]  # no temporary left
    for missing in ("d/nope", "nope/a", "file/a"):
        with pytest.raises(TaskError) as err:
            copier.copy(str(src), missing, str(dst), "out/c")
        assert err.value.error_code == "NoSuchKey"
    copier.release()


def test_the_native_copy_is_whole_or_absent(tmp_path) -> None:
    import os

    from batchops._localfs import STEPS, copy_at

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    big = os.urandom(3 * 65536 + 123)  # several copy_file_range / read-write rounds
    (src / "big").write_bytes(big)
    (src / "folder").mkdir()
    (dst / "taken").mkdir()
    (dst / "taken" / "x").write_bytes(b"")  # a non-empty folder: rename cannot replace it
    sfd, dfd = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
    try:
        assert copy_at(sfd, b"big", dfd, b"big.tmp", b"big") == len(big)
        assert (dst / "big").read_bytes() == big
        with pytest.raises(FileNotFoundError) as err:
            copy_at(sfd, b"nope", dfd, b"n.tmp", b"n")
        assert err.value.filename == STEPS[0]
        with pytest.raises(IsADirectoryError):
            copy_at(sfd, b"folder", dfd, b"f.tmp", b"f")
        with pytest.raises(OSError) as err:
            copy_at(sfd, b"big", dfd, b"t.tmp", b"taken")
        assert err.value.filename == STEPS[3]
        assert sorted(p.name for p in dst.iterdir()) == ["big", "taken"]  # no temporaries
        shm = Path("/dev/shm")
        if shm.is_dir() and os.stat(shm).st_dev != os.stat(src).st_dev:
            other = Path(tempfile.mkdtemp(dir=shm))
            ofd = os.open(other, os.O_RDONLY)
            try:  # another filesystem: copy_file_range may refuse, read/write takes over
                assert copy_at(sfd, b"big", ofd, b"b.tmp", b"b") == len(big)
                assert (other / "b").read_bytes() == big
            finally:
                os.close(ofd)
                shutil.rmtree(other)
    finally:
        os.close(sfd)
        os.close(dfd)


def test_folder_copier_never_closes_a_folder_it_is_about_to_use(tmp_path, monkeypatch) -> None:
    from batchops.storage import localfs

    monkeypatch.setattr(localfs, "MAX_OPEN_DIRS", 2)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(b"%d" % i)
    copier = localfs.FolderCopier()
    for i in range(6):  # one source folder, held; a new destination folder each time
        copier.copy(str(src), f"f{i}", str(dst), f"e{i}/f")
    copier.release()
    assert [(dst / f"e{i}" / "f").read_bytes() for i in range(6)] == [b"%d" % i for i in range(6)]


def test_the_temporary_name_is_never_written_through(tmp_path) -> None:
    """Something already at the temporary name (an object of the same job, a symlink)
    is neither overwritten nor followed; the copy takes another name."""
    import os

    from batchops._localfs import STEPS, copy_at
    from batchops.storage.localfs import FolderCopier
    from batchops.storage.outcomes import TaskError

    src, dst, elsewhere = tmp_path / "src", tmp_path / "dst", tmp_path / "elsewhere"
    for d in (src, dst, elsewhere):
        d.mkdir()
    (src / "a").write_bytes(b"new")
    (elsewhere / "victim").write_bytes(b"keep")
    os.symlink(elsewhere / "victim", dst / "a.tmp")
    sfd, dfd = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
    try:
        with pytest.raises(FileExistsError) as err:
            copy_at(sfd, b"a", dfd, b"a.tmp", b"a")
        assert err.value.filename == STEPS[1]
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (elsewhere / "victim").read_bytes() == b"keep"

    import fcntl

    from batchops._localfs import temp_name

    copier = FolderCopier()
    taken = dst / temp_name(b"a").decode()  # the temporary a copy to "a" tries first
    os.symlink(elsewhere / "victim", taken)  # a symlink there: neither followed nor removed
    copier.copy(str(src), "a", str(dst), "a")
    assert (dst / "a").read_bytes() == b"new" and taken.is_symlink()
    assert (elsewhere / "victim").read_bytes() == b"keep"
    taken.unlink()
    taken.write_bytes(b"a live copy's")  # a temporary a live copy holds (its lock)
    with open(taken, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (src / "a").write_bytes(b"newer")
        copier.copy(str(src), "a", str(dst), "a")
        assert (dst / "a").read_bytes() == b"newer" and taken.read_bytes() == b"a live copy's"
    os.mkfifo(src / "pipe")  # opened without blocking, refused as not a file
    with pytest.raises(TaskError) as task_err:
        copier.copy(str(src), "pipe", str(dst), "pipe")
    assert task_err.value.error_code == "InvalidObjectKey"
    copier.release()
    assert sorted(p.name for p in dst.iterdir()) == sorted(["a", "a.tmp", taken.name])
    taken.write_bytes(b"")  # unlocked now, as a killed copy leaves it: the next copy of
    copier.copy(str(src), "a", str(dst), "a")  # "a" removes it
    assert sorted(p.name for p in dst.iterdir()) == ["a", "a.tmp"]
