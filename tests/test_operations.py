"""Every operation against the S3 server, read back with an independent client (boto3)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import textwrap
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import error_lines, job_id_of, read_report, report_manifest_path, write_manifest

KEYS = ["a.txt", "dir/b c.bin", "plus+pct%.dat"]


def _body(key: str) -> bytes:
    return (key.encode() + b"\x00\xff") * 1000


def _seed(s3, bucket: str, keys=KEYS, **kw) -> None:  # type: ignore[no-untyped-def]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=_body(k), **kw)


def run_op(cli, tmp_path: Path, rows, *flags: str, expect: int | None = 0, **kw):  # type: ignore[no-untyped-def]
    m = write_manifest(tmp_path / f"m{len(list(tmp_path.glob('m*.csv')))}.csv", rows)
    proc = cli("run", "--manifest", str(m), *flags, "--workers", "1", "--json",
               "--no-progress", **kw)
    assert "Traceback" not in proc.stderr, proc.stderr
    if expect is not None:
        assert proc.returncode == expect, proc.stdout + proc.stderr
    if proc.returncode in (0, 1):
        _, report = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
        return proc, {r[1]: r for r in report}
    return proc, {}


def test_put_tagging_replaces_the_tag_set(cli, s3, bucket, tmp_path) -> None:
    _seed(s3, bucket)
    s3.put_object_tagging(Bucket=bucket, Key=KEYS[0],
                          Tagging={"TagSet": [{"Key": "old", "Value": "1"}]})
    _, rows = run_op(cli, tmp_path, [(bucket, k) for k in KEYS], "--operation", "put-tagging",
                     "--tag", "project=x", "--tag", "owner=y z")
    for k in KEYS:
        tags = s3.get_object_tagging(Bucket=bucket, Key=k)["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == [("owner", "y z"), ("project", "x")]
    assert all(r[3] == "succeeded" for r in rows.values())


def test_put_tagging_honours_version_ids(cli, s3, bucket, tmp_path) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    run_op(cli, tmp_path, [(bucket, "k", v1)], "--operation", "put-tagging", "--tag", "v=one")
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"] == [
        {"Key": "v", "Value": "one"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v2)["TagSet"] == []


@pytest.mark.parametrize(("flags", "words"), [
    ([f"--tag=k{i}=v" for i in range(11)], "at most 10"),
    (["--tag", "x" * 129 + "=v"], "1 to 128"),
    (["--tag", "k=" + "v" * 257], "over 256"),
])
def test_tag_limits_are_enforced_at_creation(cli, tmp_path, flags, words) -> None:
    proc, _ = run_op(cli, tmp_path, [("b", "k")], "--operation", "put-tagging", *flags,
                     expect=2)
    assert words in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_delete_tagging(cli, s3, bucket, tmp_path) -> None:
    _seed(s3, bucket, tagging_keys := KEYS[:2])
    for k in tagging_keys:
        s3.put_object_tagging(Bucket=bucket, Key=k,
                              Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    run_op(cli, tmp_path, [(bucket, k) for k in tagging_keys], "--operation", "delete-tagging")
    assert all(s3.get_object_tagging(Bucket=bucket, Key=k)["TagSet"] == [] for k in tagging_keys)


def test_put_acl_canned_and_grants(cli, s3, bucket, tmp_path) -> None:
    _seed(s3, bucket)
    all_users = "http://acs.amazonaws.com/groups/global/AllUsers"
    run_op(cli, tmp_path, [(bucket, KEYS[0])], "--operation", "put-acl", "--acl", "public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key=KEYS[0])["Grants"]
    assert any(g["Grantee"].get("URI") == all_users and g["Permission"] == "READ" for g in grants)

    owner = s3.get_object_acl(Bucket=bucket, Key=KEYS[1])["Owner"]["ID"]
    run_op(cli, tmp_path, [(bucket, KEYS[1])], "--operation", "put-acl", "--owner-id", owner,
           "--grant", f"FULL_CONTROL=id:{owner}", "--grant", f"READ_ACP=uri:{all_users}")
    grants = s3.get_object_acl(Bucket=bucket, Key=KEYS[1])["Grants"]
    got = {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in grants}
    assert got == {(owner, "FULL_CONTROL"), (all_users, "READ_ACP")}


def test_restore_archived_objects(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="cold", Body=b"ice", StorageClass="GLACIER")
    s3.put_object(Bucket=bucket, Key="warm", Body=b"sun")
    proc, rows = run_op(cli, tmp_path, [(bucket, "cold"), (bucket, "warm")], "--operation",
                        "restore", "--days", "3", "--tier", "BULK", expect=1)
    assert rows["cold"][3:] == ["succeeded", "200", "", "Successful"]  # 202: started
    assert "ongoing-request" in s3.head_object(Bucket=bucket, Key="cold")["Restore"]
    assert rows["warm"][3:6] == ["failed", "403", "InvalidObjectState"]
    # A second restore is reported as the store reports it, not as a crash: this server
    # answers 200 OK (a restored copy exists; its expiry was updated), not 202 Accepted,
    # and the report's message says so.
    proc, rows = run_op(cli, tmp_path, [(bucket, "cold")], "--operation", "restore",
                        "--days", "3", expect=0)
    assert rows["cold"][3:] == ["succeeded", "200", "", "Restore already done; expiry updated"]


def test_put_retention_and_legal_hold(cli, s3, tmp_path) -> None:
    bucket = "lock-" + hashlib.md5(str(tmp_path).encode()).hexdigest()[:10]
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    v = s3.put_object(Bucket=bucket, Key="k", Body=b"locked")["VersionId"]
    until = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    run_op(cli, tmp_path, [(bucket, "k", v)], "--operation", "put-retention",
           "--retention-mode", "GOVERNANCE", "--retain-until",
           until.isoformat().replace("+00:00", "Z"))
    head = s3.head_object(Bucket=bucket, Key="k", VersionId=v)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    run_op(cli, tmp_path, [(bucket, "k", v)], "--operation", "put-legal-hold",
           "--legal-hold", "ON")
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v)["ObjectLockLegalHoldStatus"] == "ON"
    # Shortening GOVERNANCE retention needs the bypass flag.
    run_op(cli, tmp_path, [(bucket, "k", v)], "--operation", "put-retention",
           "--retention-mode", "GOVERNANCE", "--retain-until", "2030-01-01T00:00:00Z",
           "--bypass-governance")
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v)[
        "ObjectLockRetainUntilDate"].year == 2030


HANDLER = '''
import json, os, pathlib, urllib.parse
LOG = pathlib.Path(os.environ["INVOKE_LOG"])

def handler(event):
    task = event["tasks"][0]
    key = urllib.parse.unquote_plus(task["s3Key"])  # URL-encoded, as Amazon sends it
    with LOG.open("a") as f:
        f.write(json.dumps({"key": key, "bucket": task.get("s3Bucket"),
                            "args": event["job"].get("userArguments")}) + "\\n")
    marker = LOG.with_name("tmp-" + str(abs(hash(key))))
    if key.startswith("flaky") and not marker.exists():
        marker.write_text("x")
        code, text = "TemporaryFailure", "try later"
    elif key.startswith("bad"):
        code, text = "PermanentFailure", "cannot process " + key
    else:
        code, text = "Succeeded", "processed " + key
    return {"invocationSchemaVersion": "2.0", "treatMissingKeysAs": "PermanentFailure",
            "invocationId": event["invocationId"],
            "results": [{"taskId": task["taskId"], "resultCode": code, "resultString": text}]}
'''


def test_invoke_python_function(cli, bucket, tmp_path, monkeypatch) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "hooks.py").write_text(textwrap.dedent(HANDLER))
    log = tmp_path / "invocations.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("INVOKE_LOG", str(log))
    keys = ["ok1", "ok 2", "flaky1", "flaky2", "bad1"]
    proc, rows = run_op(cli, tmp_path, [(bucket, k) for k in keys], "--operation", "invoke",
                        "--function", "python:mypkg.hooks:handler", "--user-arg", "mode=test",
                        expect=1)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted({s["key"] for s in seen}) == sorted(keys)
    assert all(s["bucket"] == bucket and s["args"] == {"mode": "test"} for s in seen)
    assert sum(s["key"].startswith("flaky") for s in seen) == 4  # each retried once
    assert rows["flaky1"][3] == "succeeded" and rows["flaky1"][6] == "processed flaky1"
    assert rows["ok+2"][6] == "processed ok 2"
    assert rows["bad1"][3:7] == ["failed", "400", "PermanentFailure", "cannot process bad1"]


def test_invoke_command_never_uses_a_shell(cli, bucket, tmp_path) -> None:
    script = tmp_path / "handler.py"
    script.write_text(textwrap.dedent('''
        import json, sys
        event = json.load(sys.stdin)
        task = event["tasks"][0]
        print(json.dumps({"invocationSchemaVersion": event["invocationSchemaVersion"],
                          "invocationId": event["invocationId"],
                          "results": [{"taskId": task["taskId"], "resultCode": "Succeeded",
                                       "resultString": "len=" + str(len(task["s3Key"]))}]}))
    '''))
    hostile = ["$(touch pwned)", "; rm -rf x", "`touch pwned2`", "a && touch pwned3"]
    (tmp_path / "x").mkdir()
    argv = json.dumps([sys.executable, str(script)])
    _, rows = run_op(cli, tmp_path, [(bucket, k) for k in hostile], "--operation", "invoke",
                     "--function", f"command:{argv}", "--invocation-schema", "1.0",
                     cwd=tmp_path)
    assert len(rows) == 4 and all(r[3] == "succeeded" for r in rows.values())
    assert not list(Path.cwd().glob("pwned*")) and not list(tmp_path.glob("pwned*"))
    assert (tmp_path / "x").is_dir()


def test_replicate_keeps_metadata_tags_and_acl(cli, s3, bucket, tmp_path) -> None:
    dst = bucket + "-replica"
    s3.create_bucket(Bucket=dst)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"first", ContentType="text/x-a",
                       Metadata={"m": "1"}, Tagging="t=1", ACL="public-read")["VersionId"]
    s3.put_object(Bucket=bucket, Key="doc", Body=b"second")
    _, rows = run_op(cli, tmp_path, [(bucket, "doc", v1)], "--operation", "replicate",
                     "--target", dst)
    got = s3.get_object(Bucket=dst, Key="doc")
    assert got["Body"].read() == b"first" and got["ContentType"] == "text/x-a"
    assert got["Metadata"] == {"m": "1"}
    assert s3.get_object_tagging(Bucket=dst, Key="doc")["TagSet"] == [{"Key": "t", "Value": "1"}]
    grants = s3.get_object_acl(Bucket=dst, Key="doc")["Grants"]
    assert any(g["Permission"] == "READ" and "AllUsers" in g["Grantee"].get("URI", "")
               for g in grants)
    assert rows["doc"][6] == f"Replicated version {v1}"


def test_copy_options_are_applied(cli, s3, bucket, tmp_path) -> None:
    dst = bucket + "-opt"
    s3.create_bucket(Bucket=dst)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentType="text/plain",
                  Metadata={"old": "1"}, Tagging="old=1")
    run_op(cli, tmp_path, [(bucket, "k")], "--operation", "copy", "--target", dst,
           "--storage-class", "STANDARD_IA", "--content-type", "application/x-new",
           "--metadata", "new=2", "--new-tag", "fresh=yes", "--acl", "public-read",
           "--checksum-algorithm", "SHA256")
    head = s3.head_object(Bucket=dst, Key="k", ChecksumMode="ENABLED")
    assert head["StorageClass"] == "STANDARD_IA" and head["ContentType"] == "application/x-new"
    assert head["Metadata"] == {"new": "2"}
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"data").digest()).decode()
    assert s3.get_object_tagging(Bucket=dst, Key="k")["TagSet"] == [
        {"Key": "fresh", "Value": "yes"}]
    assert any("AllUsers" in g["Grantee"].get("URI", "")
               for g in s3.get_object_acl(Bucket=dst, Key="k")["Grants"])


def test_copy_large_objects_uses_multipart_copy(cli, s3, bucket, tmp_path) -> None:
    data = bytes(range(256)) * (12 * 1024 * 4)  # 12 MiB
    s3.put_object(Bucket=bucket, Key="big", Body=data, ContentType="x/big", Metadata={"a": "b"},
                  Tagging="k=v")
    spec = {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{bucket}",
                                "TargetKeyPrefix": "mp",
                                "BatchopsMultipartThreshold": 5 * 1024 * 1024}}
    run_op(cli, tmp_path, [(bucket, "big")], "--operation", json.dumps(spec))
    got = s3.get_object(Bucket=bucket, Key="mp/big")
    assert got["Body"].read() == data and got["ETag"].strip('"').endswith("-2")
    assert got["ContentType"] == "x/big" and got["Metadata"] == {"a": "b"}
    assert s3.get_object_tagging(Bucket=bucket, Key="mp/big")["TagSet"] == [
        {"Key": "k", "Value": "v"}]


CRC32C_CHECK = 0xE3069283  # CRC-32C of "123456789"
CRC64NVME_CHECK = 0xAE8B14860A799888  # CRC-64/NVME of "123456789"


def _expected(algorithm: str, data: bytes) -> bytes:
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    return hashlib.new(algorithm.lower(), data).digest()


@pytest.mark.parametrize("algorithm", ["CRC32", "MD5", "SHA1", "SHA256", "SHA512"])
def test_compute_checksum_matches_hashlib_and_zlib(cli, s3, bucket, tmp_path, algorithm):
    _seed(s3, bucket)
    _, rows = run_op(cli, tmp_path, [(bucket, k) for k in KEYS], "--operation",
                     "compute-checksum", "--checksum-algorithm", algorithm)
    assert len(rows) == len(KEYS)
    for k in KEYS:
        row = next(r for r in rows.values() if r[1] == k.replace(" ", "+").replace("%", "%25")
                   .replace("+pct", "%2Bpct"))
        value = json.loads(row[6])
        assert value["ChecksumAlgorithm"] == algorithm
        assert base64.b64decode(value["Checksum"]) == _expected(algorithm, _body(k))


@pytest.mark.parametrize(("algorithm", "check"), [("CRC32C", CRC32C_CHECK),
                                                   ("CRC64NVME", CRC64NVME_CHECK)])
def test_compute_checksum_crc_check_values(cli, s3, bucket, tmp_path, algorithm, check):
    s3.put_object(Bucket=bucket, Key="check", Body=b"123456789")
    _, rows = run_op(cli, tmp_path, [(bucket, "check")], "--operation", "compute-checksum",
                     "--checksum-algorithm", algorithm)
    assert int(json.loads(rows["check"][6])["ChecksumHex"], 16) == check


def test_delete_needs_confirmation_and_dry_run_lists(cli, s3, bucket, tmp_path) -> None:
    _seed(s3, bucket)
    rows = [(bucket, k) for k in KEYS]
    proc, _ = run_op(cli, tmp_path, rows, "--operation", "delete", expect=2)
    assert "--confirm-delete" in proc.stderr
    proc, report = run_op(cli, tmp_path, rows, "--operation", "delete", "--dry-run")
    assert len(report) == 3 and all("DryRun" in r[6] for r in report.values())
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 3  # untouched
    run_op(cli, tmp_path, rows, "--operation", "delete", "--confirm-delete")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_delete_a_named_version(cli, s3, bucket, tmp_path) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    run_op(cli, tmp_path, [(bucket, "k", v1)], "--operation", "delete", "--confirm-delete")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == [v2]


@pytest.mark.parametrize("op", [["put-tagging", "--tag", "a=b"], ["delete-tagging"],
                                ["put-acl", "--acl", "private"], ["restore"],
                                ["put-legal-hold", "--legal-hold", "ON"]])
def test_operations_a_store_cannot_do_are_refused_at_creation(cli, tmp_path, op) -> None:
    proc, _ = run_op(cli, tmp_path, [(f"file://{tmp_path}", "k")], "--operation", *op,
                     expect=2)
    assert f"file://{tmp_path}" in proc.stderr and len(error_lines(proc.stderr)) == 1


def test_dry_run_of_copy_touches_nothing(cli, s3, bucket, tmp_path) -> None:
    _seed(s3, bucket)
    _, rows = run_op(cli, tmp_path, [(bucket, k) for k in KEYS], "--operation", "copy",
                     "--target", f"file://{tmp_path / 'out'}", "--dry-run")
    assert len(rows) == 3 and not (tmp_path / "out").exists()


def test_local_store_operations(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for k in ("x", "y"):
        (src / k).write_bytes(_body(k))
    rows = [(f"file://{src}", "x"), (f"file://{src}", "y")]
    _, report = run_op(cli, tmp_path, rows, "--operation", "compute-checksum",
                       "--checksum-algorithm", "SHA256")
    assert base64.b64decode(json.loads(report["x"][6])["Checksum"]) == \
        hashlib.sha256(_body("x")).digest()
    run_op(cli, tmp_path, rows[:1], "--operation", "delete", "--confirm-delete")
    assert not (src / "x").exists() and (src / "y").exists()


def test_memory_store_operations_in_process(home, tmp_path) -> None:
    import obstore
    from obstore.store import MemoryStore

    from batchops import JobOptions, create_job, run_job

    mem = MemoryStore()
    for k in ("p", "q"):
        obstore.put(mem, k, _body(k))
    m = write_manifest(tmp_path / "m.csv", [("memory://", "p"), ("memory://", "q")])
    store = create_job(JobOptions(manifest=str(m), operation="compute-checksum",
                                  params={"ChecksumAlgorithm": "CRC32"}))
    doc = run_job(store, in_process=True, preset_stores={"memory://": mem})
    assert doc["Job"]["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    _, rows = read_report(report_manifest_path(home, store.job_id))
    for r in rows:
        assert base64.b64decode(json.loads(r[6])["Checksum"]) == \
            zlib.crc32(_body(r[1])).to_bytes(4, "big")
    store = create_job(JobOptions(manifest=str(m), operation="copy",
                                  params={"TargetResource": "memory://",
                                          "TargetKeyPrefix": "copies"}))
    run_job(store, in_process=True, preset_stores={"memory://": mem})
    assert bytes(obstore.get(mem, "copies/q").bytes()) == _body("q")
