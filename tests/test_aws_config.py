"""AWS configuration as aws-cli resolves it (issue 11 §1-2), through the real CLI, against
moto servers that check signatures (each lets in only its own key pair), with profiles in
a temporary HOME.

Every test here would fail if batchops read only AWS_ACCESS_KEY_ID and AWS_ENDPOINT_URL:
the servers refuse any other key, and nothing is set in the environment but what each
test writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import KeyedStore
from helpers import job_id_of, read_report, report_manifest_path, write_manifest


def _profiles(home: Path, config: str, credentials: str = "") -> None:
    (home / ".aws" / "config").write_text(config)
    if credentials:
        (home / ".aws" / "credentials").write_text(credentials)


def _bucket(store: KeyedStore, name: str, keys: dict[str, bytes] | None = None) -> str:
    s3 = store.client()
    s3.create_bucket(Bucket=name)
    for k, body in (keys or {}).items():
        s3.put_object(Bucket=name, Key=k, Body=body)
    return name


def _keyed(store: KeyedStore, name: str) -> str:
    return (f"[{name}]\naws_access_key_id = {store.access_key}\n"
            f"aws_secret_access_key = {store.secret_key}\n")


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("batchops:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


KEYS = {"a.txt": b"alpha", "dir/b b.txt": b"beta", "c%.bin": bytes(range(256))}


@pytest.fixture
def stores(keyed_stores: tuple[KeyedStore, KeyedStore], aws_home: Path):  # type: ignore[no-untyped-def]
    return keyed_stores


def test_a_profile_in_home_signs_obstore_the_s3_api_and_the_crt_copier(
        cli, stores, aws_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _ = stores
    _profiles(aws_home, f"[profile east]\nregion = us-east-1\nendpoint_url = {a.endpoint}\n",
              _keyed(a, "east"))
    src = _bucket(a, "prof-src", KEYS)
    dst = _bucket(a, "prof-dst")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    # CopyObject between buckets: awscrt signs.
    proc = cli("run", "--profile", "east", "--manifest", str(m), "--operation", "copy",
               "--target", f"s3://{dst}", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    s3 = a.client()
    assert {k: s3.get_object(Bucket=dst, Key=k)["Body"].read() for k in KEYS} == KEYS
    # Tagging: aiobotocore signs.
    proc = cli("run", "--profile", "east", "--manifest", str(m), "--operation", "put-tagging",
               "--tag", "team=blue", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert s3.get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == [
        {"Key": "team", "Value": "blue"}]
    # To a folder: obstore reads (GET) with the profile's keys.
    out = tmp_path / "out"
    proc = cli("run", "--profile", "east", "--manifest", str(m), "--operation", "copy",
               "--target", f"file://{out}", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert {k: (out / k).read_bytes() for k in KEYS} == KEYS


def test_aws_profile_and_config_file_variables_and_a_services_section(
        cli, stores, aws_home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    a, _ = stores
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    (elsewhere / "config").write_text(
        f"[profile svc]\nregion = us-east-1\nservices = local\n\n"
        f"[services local]\ns3 =\n  endpoint_url = {a.endpoint}\n")
    (elsewhere / "creds").write_text(_keyed(a, "svc"))
    src = _bucket(a, "svc-src", KEYS)
    s3 = a.client()  # before AWS_PROFILE names a profile this test's boto3 does not see
    monkeypatch.setenv("AWS_CONFIG_FILE", str(elsewhere / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(elsewhere / "creds"))
    monkeypatch.setenv("AWS_PROFILE", "svc")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "x=1",
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert s3.get_object_tagging(Bucket=src, Key="c%.bin")["TagSet"] == [
        {"Key": "x", "Value": "1"}]


def test_credential_process_and_aws_endpoint_url_s3(
        cli, stores, aws_home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    a, _ = stores
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = tmp_path / "creds.py"
    calls = tmp_path / "calls"
    script.write_text(
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write('x')\n"
        f"print(json.dumps({{'Version': 1, 'AccessKeyId': {a.access_key!r}, "
        f"'SecretAccessKey': {a.secret_key!r}, 'Expiration': {expires!r}}}))\n")
    _profiles(aws_home, f"[default]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", a.endpoint)
    src = _bucket(a, "proc-src", KEYS)
    dst = _bucket(a, "proc-dst")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"s3://{dst}",
               "--no-progress", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert a.client().get_object(Bucket=dst, Key="dir/b b.txt")["Body"].read() == b"beta"
    # Resolved once per process (preflight's, then the worker's): every client of a
    # process shares one set of credentials, not one credential_process run each.
    assert 1 <= len(calls.read_text()) <= 2


def test_an_assume_role_profile(cli, stores, aws_home: Path,
                                tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _ = stores
    iam = a.client("iam")
    role = iam.create_role(RoleName=f"copier-{os.getpid()}", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"AWS": "*"}}]}))["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*",
                                                 "Resource": "*"}]}))
    _profiles(aws_home,
              f"[profile base]\nregion = us-east-1\nendpoint_url = {a.endpoint}\n\n"
              f"[profile copier]\nrole_arn = {role['Arn']}\nsource_profile = base\n"
              f"region = us-east-1\nendpoint_url = {a.endpoint}\n",
              _keyed(a, "base"))
    src = _bucket(a, "role-src", KEYS)
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    proc = cli("run", "--profile", "copier", "--manifest", str(m), "--operation",
               "put-tagging", "--tag", "by=role", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert a.client().get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == [
        {"Key": "by", "Value": "role"}]


def test_a_missing_profile_is_one_sentence(cli, stores, aws_home: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    m = write_manifest(tmp_path / "m.csv", [("some-bucket", "k")])
    proc = cli("run", "--profile", "nope", "--manifest", str(m), "--operation", "put-tagging",
               "--tag", "a=b", "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "--profile nope" in line and "could not be found" in line, line
    monkeypatch.setenv("AWS_PROFILE", "gone")
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "a=b",
               "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "AWS_PROFILE=gone" in line and "internal error" not in line, line


def test_no_credentials_anywhere_and_wrong_keys_are_refused_before_any_task(
        cli, stores, aws_home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    a, _ = stores
    src = _bucket(a, "nocred-src", KEYS)
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    proc = cli("run", "--endpoint-url", a.endpoint, "--manifest", str(m), "--operation",
               "put-tagging", "--tag", "a=b", "--no-progress")
    assert proc.returncode == 2
    assert "no AWS credentials" in _one_line(proc.stderr)
    _profiles(aws_home, "[profile bad]\nregion = us-east-1\n",
              f"[bad]\naws_access_key_id = {a.access_key}\naws_secret_access_key = wrong\n")
    proc = cli("run", "--profile", "bad", "--endpoint-url", a.endpoint, "--manifest", str(m),
               "--operation", "put-tagging", "--tag", "a=b", "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert src in line and "signature" in line.lower() and "--profile bad" in line, line
    assert a.client().get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == []


def test_flag_values_that_would_panic_a_client_are_one_sentence(
        cli, stores, aws_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = write_manifest(tmp_path / "m.csv", [("bkt", "k")])
    for flags, named in ((["--endpoint-url", "127.0.0.1:9000"], "--endpoint-url"),
                         (["--target", "s3://my bucket"], "TargetResource"),
                         (["--target", "s3://dst?access_key_id=AKIA"], "TargetResource"),
                         (["--target", "s3://u:p@dst"], "TargetResource"),
                         (["--target", "az://acct/c?sv=2020&sig=abc"], "TargetResource"),
                         (["--target", "arn:aws:s4:::x"], "TargetResource"),
                         (["--target", "s3://dst", "--report", "s3://u:pw@reports"],
                          "--report")):
        proc = cli("run", *flags, "--manifest", str(m), "--operation", "copy",
                   *([] if "--target" in flags else ["--target", "s3://dst"]), "--no-progress")
        assert proc.returncode == 2, (flags, proc.stderr)
        assert named in _one_line(proc.stderr), (flags, proc.stderr)
        assert not list(Path(cli.home).glob("jobs/*")), "a job was created"


def test_one_job_copies_between_two_endpoints_with_their_own_keys(
        cli, stores, aws_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The migration recipe of the README: AWS-like store A to S3-compatible store B."""
    a, b = stores
    _profiles(aws_home,
              f"[profile aws]\nregion = us-east-1\nendpoint_url = {a.endpoint}\n\n"
              f"[profile minio]\nregion = us-east-1\nendpoint_url = {b.endpoint}\n",
              _keyed(a, "aws") + _keyed(b, "minio"))
    src = _bucket(a, "mig-src", KEYS)
    dst = _bucket(b, "mig-dst")
    reports = _bucket(b, "mig-reports")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    b.client().put_object(Bucket=reports, Key="in/m.csv", Body=m.read_bytes())
    proc = cli("run", "--profile", "aws", "--manifest", f"s3://{reports}/in/m.csv?profile=minio",
               "--operation", "copy", "--target", f"s3://{dst}/copied?profile=minio",
               "--report", f"s3://{reports}/r?profile=minio", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    got = b.client()
    assert {k: got.get_object(Bucket=dst, Key=f"copied/{k}")["Body"].read()
            for k in KEYS} == KEYS
    report_keys = [o["Key"] for o in got.list_objects_v2(Bucket=reports)["Contents"]]
    assert any(k.endswith("manifest.json") for k in report_keys)
    # The job keeps profile names, never keys.
    job_dir = Path(cli.home) / "jobs" / json.loads(proc.stdout)["Job"]["JobId"]
    for path in job_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (a.secret_key, b.secret_key, a.access_key, b.access_key):
                assert secret.encode() not in data, path


def test_a_bucket_map_gives_each_bucket_its_own_store(
        cli, stores, aws_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = stores
    _profiles(aws_home, f"[profile minio]\nregion = us-east-1\nendpoint_url = {b.endpoint}\n",
              _keyed(a, "default") + _keyed(b, "minio"))
    src = _bucket(b, "map-src", KEYS)
    dst = _bucket(a, "map-dst")
    m = write_manifest(tmp_path / "m.csv", [("photos", k) for k in KEYS])
    proc = cli("run", "--endpoint-url", a.endpoint, "--bucket-map",
               f"photos=s3://{src}?profile=minio", "--manifest", str(m), "--operation", "copy",
               "--target", f"s3://{dst}", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    assert a.client().get_object(Bucket=dst, Key="c%.bin")["Body"].read() == KEYS["c%.bin"]
    job = job_id_of(proc.stdout)
    _, rows = read_report(report_manifest_path(Path(cli.home), job))
    assert {r[3] for r in rows} == {"succeeded"} and len(rows) == len(KEYS)


def test_aws_s3control_create_job_flags_run_unchanged(
        cli, stores, aws_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`aws s3control create-job --region ... --account-id ...` with `aws s3control`
    replaced by `batchops`."""
    a, _ = stores
    _profiles(aws_home, f"[default]\nendpoint_url = {a.endpoint}\n", _keyed(a, "default"))
    src = _bucket(a, "ctl-src", KEYS)
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    etag = hashlib.md5(m.read_bytes()).hexdigest()
    proc = cli("create-job", "--region", "us-west-2", "--account-id", "123456789012",
               "--operation", '{"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}',
               "--manifest", json.dumps({"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                                  "Fields": ["Bucket", "Key"]},
                                         "Location": {"ObjectArn": f"file://{m}",
                                                      "ETag": etag}}),
               "--report", '{"Enabled": false}', "--priority", "10",
               "--role-arn", "arn:aws:iam::123456789012:role/batch",
               "--no-confirmation-required", "--client-request-token", "tok-1")
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["JobId"]
    doc = json.loads((Path(cli.home) / "jobs" / job_id / "job.json").read_text())
    assert doc["Batchops"]["aws"] == {"region": "us-west-2"}
    run = cli("runner")
    assert run.returncode == 0, run.stderr
    assert a.client().get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == [
        {"Key": "k", "Value": "v"}]


def test_bucket_endpoints_come_from_botocore_rules(aws_home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What CrtCopier sends to: botocore's endpoint rules, not a hand-built host name."""
    from batchops.model.spec import AwsSettings
    from batchops.storage.aws import AwsContext

    ctx = AwsContext(AwsSettings(region="eu-west-1"))
    assert ctx.bucket_endpoint("plain") == ("https", "plain.s3.eu-west-1.amazonaws.com", "")
    # A dotted name would break TLS as a virtual host: botocore goes path style.
    assert ctx.bucket_endpoint("my.dotted.bucket") == (
        "https", "s3.eu-west-1.amazonaws.com", "/my.dotted.bucket")
    assert AwsContext(AwsSettings(region="cn-north-1")).bucket_endpoint("data")[1] == \
        "data.s3.cn-north-1.amazonaws.com.cn"
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    assert "fips" in AwsContext(AwsSettings(region="us-gov-west-1")).bucket_endpoint("g")[1]


def test_arns_of_every_partition_and_lambda_region(aws_home: Path) -> None:
    from batchops.model.arns import lambda_region, s3_arn_to_url
    from batchops.model.errors import SpecError

    assert s3_arn_to_url("arn:aws:s3:::b/k/x", "t") == "s3://b/k/x"
    assert s3_arn_to_url("arn:aws-cn:s3:::b", "t") == "s3://b"
    assert s3_arn_to_url("arn:aws-us-gov:s3:::b", "t") == "s3://b"
    assert lambda_region("arn:aws:lambda:eu-west-1:123456789012:function:f", "f") == "eu-west-1"
    for bad in ("arn:aws:s4:::x", "arn:aws:s3", "arn:aws:lambda:us-east-1:1:function:f"):
        with pytest.raises(SpecError):
            s3_arn_to_url(bad, "t")


def test_a_lambda_client_goes_to_lambda_not_to_aws_endpoint_url(
        aws_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from batchops.model.spec import AwsSettings
    from batchops.storage.aws import AwsContext
    from batchops.storage.s3api import S3Api

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")

    async def endpoints() -> tuple[str, str]:
        api = S3Api(AwsContext(AwsSettings()))
        try:
            lam = await api.lambda_client("eu-west-1")
            s3 = await api.client()
            return lam.meta.endpoint_url, s3.meta.endpoint_url
        finally:
            await api.close()

    lam, s3 = asyncio.run(endpoints())
    assert lam == "https://lambda.eu-west-1.amazonaws.com"
    assert s3 == "http://127.0.0.1:9"


def test_s3_to_azure_blob_storage(cli, s3, bucket, azurite: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 (moto) to Azure (Azurite, Azure's own emulator) in one job: streamed get -> put;
    Azure's settings come from its AZURE_* variables."""
    from azure.storage.blob import BlobServiceClient

    from conftest import AZURITE_KEY

    blobs = BlobServiceClient(account_url=f"{azurite}/devstoreaccount1",
                              credential={"account_name": "devstoreaccount1",
                                          "account_key": AZURITE_KEY})
    container = f"c{bucket[2:]}"
    blobs.create_container(container)
    for k, body in KEYS.items():
        s3.put_object(Bucket=bucket, Key=k, Body=body)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in KEYS])
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azurite)
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"az://devstoreaccount1/{container}/from-s3", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    got = blobs.get_container_client(container)
    assert {b.name: got.download_blob(b.name).readall() for b in got.list_blobs()} == {
        f"from-s3/{k}": body for k, body in KEYS.items()}


def test_web_identity_credentials(cli, aws_home: Path, s3_endpoint: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (as on EKS): botocore calls STS's
    AssumeRoleWithWebIdentity (unsigned: here against the moto server that checks no
    keys; with no other credential anywhere the job could not start without it)."""
    import boto3

    admin = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="x")
    src, dst = f"web-src-{os.getpid()}", f"web-dst-{os.getpid()}"
    admin.create_bucket(Bucket=src)
    admin.create_bucket(Bucket=dst)
    for k, body in KEYS.items():
        admin.put_object(Bucket=src, Key=k, Body=body)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiYXRjaG9wcyJ9.c2lnbmF0dXJl")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/eks-copier")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # S3 and STS: the same server
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"s3://{dst}",
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert admin.get_object(Bucket=dst, Key="a.txt")["Body"].read() == b"alpha"


def test_container_credentials(cli, aws_home: Path, s3_endpoint: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_CONTAINER_CREDENTIALS_FULL_URI (ECS, EKS Pod Identity): a credentials endpoint
    on loopback, as the container agent serves it (against the moto server that checks no
    keys: with no other credential anywhere the job could not start without the agent's)."""
    import http.server
    import threading

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
    src = f"ctr-src-{os.getpid()}"
    s3.create_bucket(Bucket=src)
    for k, body in KEYS.items():
        s3.put_object(Bucket=src, Key=k, Body=body)
    temporary = {"AccessKeyId": "ASIAAGENT0000000001", "SecretAccessKey": "agent-secret",
                 "SessionToken": "agent-session-token"}
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    served: list[str] = []

    class Agent(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            served.append(self.headers.get("Authorization", ""))
            body = json.dumps({"AccessKeyId": temporary["AccessKeyId"],
                               "SecretAccessKey": temporary["SecretAccessKey"],
                               "Token": temporary["SessionToken"],
                               "Expiration": expires}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                           f"http://127.0.0.1:{server.server_address[1]}/v2/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "agent-token")
        m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
        proc = cli("run", "--endpoint-url", s3_endpoint, "--manifest", str(m), "--operation",
                   "put-tagging", "--tag", "from=container", "--no-progress")
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert served and set(served) == {"agent-token"}
    assert s3.get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == [
        {"Key": "from", "Value": "container"}]


def _regional(endpoint: str, region: str, *buckets: str):  # type: ignore[no-untyped-def]
    """A client of `region` (moto keeps each partition's buckets apart) and its buckets."""
    import boto3

    from conftest import ACCESS_KEY, SECRET_KEY

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    for name in buckets:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return s3


def test_arns_keep_the_partition_of_the_job(cli, aws_env, s3_endpoint: str,
                                            tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An aws-cn job (its region, its ARNs) shows aws-cn ARNs: as given, or made from its
    region by botocore's partition map."""
    bucket = f"cn-{uuid.uuid4().hex[:12]}"
    reports = f"{bucket}-reports"
    s3 = _regional(s3_endpoint, "cn-north-1", bucket, reports)
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "a")])
    s3.put_object(Bucket=bucket, Key="m.csv", Body=m.read_bytes())
    etag = hashlib.md5(m.read_bytes()).hexdigest()
    proc = cli("create-job", "--region", "cn-north-1", "--endpoint-url", s3_endpoint,
               "--account-id", "123456789012",
               "--operation", '{"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}',
               "--manifest", json.dumps({"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                                  "Fields": ["Bucket", "Key"]},
                                         "Location": {"ObjectArn":
                                                      f"arn:aws-cn:s3:::{bucket}/m.csv",
                                                      "ETag": etag}}),
               "--report", json.dumps({"Enabled": True, "Bucket": f"arn:aws-cn:s3:::{reports}",
                                       "Prefix": "r", "Format": "Report_CSV_20180820",
                                       "ReportScope": "AllTasks"}),
               "--priority", "10", "--no-confirmation-required")
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["JobId"]
    job = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    assert job["Manifest"]["Location"]["ObjectArn"] == f"arn:aws-cn:s3:::{bucket}/m.csv"
    assert job["Report"]["Bucket"] == f"arn:aws-cn:s3:::{reports}", job["Report"]
    assert job["JobArn"].startswith("arn:aws-cn:s3:"), job["JobArn"]
    run = cli("runner")
    assert run.returncode == 0, run.stderr
    assert s3.get_object_tagging(Bucket=bucket, Key="a")["TagSet"] == [{"Key": "k", "Value": "v"}]
    assert any(o["Key"].endswith("manifest.json")
               for o in s3.list_objects_v2(Bucket=reports, Prefix="r/")["Contents"])
    # A generated manifest, written to an aws-cn bucket, is described by aws-cn ARNs.
    gen = {"SourceBucket": f"arn:aws-cn:s3:::{bucket}", "EnableManifestOutput": True,
           "Filter": {"KeyNameConstraint": {"MatchAnyPrefix": ["a"]}},
           "ManifestOutputLocation": {"Bucket": f"arn:aws-cn:s3:::{reports}",
                                      "ManifestPrefix": "gen",
                                      "ManifestFormat": "S3InventoryReport_CSV_20211130"}}
    proc = cli("create-job", "--region", "cn-north-1", "--endpoint-url", s3_endpoint,
               "--operation", '{"S3PutObjectTagging": {"TagSet": []}}',
               "--manifest-generator", json.dumps({"S3JobManifestGenerator": gen}),
               "--report", '{"Enabled": false}', "--priority", "10",
               "--no-confirmation-required")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(cli("describe-job", "--job-id", json.loads(proc.stdout)["JobId"],
                         check=True).stdout)["Job"]
    arn = job["GeneratedManifestDescriptor"]["Location"]["ObjectArn"]
    assert arn.startswith(f"arn:aws-cn:s3:::{reports}/gen/"), arn
    doc = json.loads(s3.get_object(Bucket=reports, Key=arn.split("/", 1)[1])["Body"].read())
    assert doc["destinationBucket"] == f"arn:aws-cn:s3:::{reports}", doc
    # Given as URLs, with only the region to go by: aws-us-gov's ARNs for a GovCloud job,
    # the target's (copy) and the bucket's in an invoke event (schema 1.0) too.
    gov = f"gov-{uuid.uuid4().hex[:12]}"
    s3 = _regional(s3_endpoint, "us-gov-west-1", gov, f"{gov}-dst", f"{gov}-reports")
    s3.put_object(Bucket=gov, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "gov.csv", [(gov, "a")])
    proc = cli("run", "--region", "us-gov-west-1", "--endpoint-url", s3_endpoint,
               "--manifest", str(m), "--operation", "copy", "--target", f"s3://{gov}-dst",
               "--report", f"s3://{gov}-reports/r", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["Report"]["Bucket"] == f"arn:aws-us-gov:s3:::{gov}-reports", job["Report"]
    assert job["Operation"]["S3PutObjectCopy"]["TargetResource"] == \
        f"arn:aws-us-gov:s3:::{gov}-dst", job["Operation"]
    assert s3.get_object(Bucket=f"{gov}-dst", Key="a")["Body"].read() == b"1"
    script = tmp_path / "handler.py"
    events = tmp_path / "events.jsonl"
    script.write_text(
        "import json, sys\n"
        "event = json.load(sys.stdin)\n"
        f"open({str(events)!r}, 'a').write(json.dumps(event) + '\\n')\n"
        "task = event['tasks'][0]\n"
        "print(json.dumps({'invocationSchemaVersion': event['invocationSchemaVersion'],\n"
        "                  'invocationId': event['invocationId'],\n"
        "                  'results': [{'taskId': task['taskId'], 'resultCode': 'Succeeded',\n"
        "                               'resultString': 'ok'}]}))\n")
    proc = cli("run", "--region", "us-gov-west-1", "--endpoint-url", s3_endpoint,
               "--manifest", str(m), "--operation", "invoke", "--function",
               f"command:{json.dumps([sys.executable, str(script)])}",
               "--invocation-schema", "1.0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    event = json.loads(events.read_text().splitlines()[0])
    assert event["tasks"][0]["s3BucketArn"] == f"arn:aws-us-gov:s3:::{gov}", event


#: Listing, under its IAM name (s3:ListBucket, what S3 checks) and under the API operation
#: names that moto checks instead (it authorises "s3:ListObjectsV2", not "s3:ListBucket").
_LISTING = ["s3:ListBucket", "s3:ListBucketVersions", "s3:ListObjects", "s3:ListObjectsV2",
            "s3:ListObjectVersions"]


def test_a_copy_job_needs_no_list_permission(cli, stores, aws_home: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A user who may read and write objects but not list the buckets: preflight (a GET
    of a key no one has) and the copy (CopyObject) pass; nothing lists."""
    a, _ = stores
    name = f"nolist-{uuid.uuid4().hex[:8]}"
    iam = a.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName="objects-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            # IAM's names, and moto's (API operation names) for HEAD and CopyObject
            {"Effect": "Allow", "Resource": "*",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:GetObjectTagging",
                        "s3:PutObjectTagging", "s3:HeadObject", "s3:CopyObject"]},
            {"Effect": "Deny", "Resource": "*", "Action": _LISTING}]}))
    src = _bucket(a, f"{name}-src", KEYS)
    dst = _bucket(a, f"{name}-dst")
    _profiles(aws_home, f"[default]\nregion = us-east-1\nendpoint_url = {a.endpoint}\n",
              f"[default]\naws_access_key_id = {key['AccessKeyId']}\n"
              f"aws_secret_access_key = {key['SecretAccessKey']}\n")
    import boto3
    from botocore.exceptions import ClientError

    user = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1",
                        aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])
    with pytest.raises(ClientError, match="AccessDenied"):  # the server does refuse a LIST
        user.list_objects_v2(Bucket=src)
    with pytest.raises(ClientError, match="AccessDenied"):
        user.list_objects_v2(Bucket=dst)
    assert user.get_object(Bucket=src, Key="a.txt")["Body"].read() == b"alpha"
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"s3://{dst}",
               "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Job"]["ProgressSummary"]["NumberOfTasksSucceeded"] == \
        len(KEYS)
    s3 = a.client()
    assert {k: s3.get_object(Bucket=dst, Key=k)["Body"].read() for k in KEYS} == KEYS


def _temporary(store: KeyedStore, who: str) -> dict[str, str]:
    """Temporary credentials the server checks (its STS's AssumeRole of a role allowed
    everything), as an instance role or an SSO permission set hands them out."""
    iam = store.client("iam")
    name = f"{who}-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"AWS": "*"}}]}))["Role"]
    iam.put_role_policy(RoleName=name, PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*",
                                                 "Resource": "*"}]}))
    creds = store.client("sts").assume_role(RoleArn=role["Arn"],
                                            RoleSessionName=who)["Credentials"]
    return {k: creds[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


class _Loopback:
    """A small HTTP server on loopback answering GET/PUT with `answer(method, path,
    headers) -> (status, body)`; records what it was asked."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        import http.server
        import threading

        self.asked: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self) -> None:
                outer.asked.append((self.command, self.path, dict(self.headers)))
                status, body = answer(self.command, self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = _reply  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> _Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_instance_metadata_credentials(cli, stores, aws_home: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """On EC2 with nothing configured: botocore asks the instance metadata service
    (IMDSv2: a session token first), here a loopback server named by
    AWS_EC2_METADATA_SERVICE_ENDPOINT, handing out temporary credentials (with a session
    token) that the server checks."""
    a, _ = stores
    src = _bucket(a, f"imds-src-{uuid.uuid4().hex[:8]}", KEYS)
    expires = (datetime.now(UTC) + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    role = "batchops-instance-role"
    keys = _temporary(a, "instance")

    def imds(method: str, path: str, headers) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
        if method == "PUT" and path == "/latest/api/token":
            return 200, b"imds-session-token"
        if headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            return 401, b""
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, role.encode()
        if path == f"/latest/meta-data/iam/security-credentials/{role}":
            return 200, json.dumps({
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": keys["AccessKeyId"],
                "SecretAccessKey": keys["SecretAccessKey"], "Token": keys["SessionToken"],
                "Expiration": expires, "LastUpdated": expires}).encode()
        return 404, b""

    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
    with _Loopback(imds) as service:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", service.url + "/")
        proc = cli("run", "--endpoint-url", a.endpoint, "--manifest", str(m), "--operation",
                   "put-tagging", "--tag", "from=imds", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert a.client().get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == [
        {"Key": "from", "Value": "imds"}]
    asked = [(method, path) for method, path, _ in service.asked]
    assert ("PUT", "/latest/api/token") in asked, asked
    assert ("GET", f"/latest/meta-data/iam/security-credentials/{role}") in asked, asked


@pytest.mark.parametrize("form", ["sso-session", "legacy"])
def test_sso_credentials(cli, stores, aws_home: Path, tmp_path: Path, form: str) -> None:  # type: ignore[no-untyped-def]
    """An `aws sso login` profile: botocore reads the cached token under ~/.aws/sso/cache
    and calls the portal's GetRoleCredentials, here a loopback server named by the
    profile's services section (`sso = endpoint_url = ...`), as is S3's endpoint."""
    a, _ = stores
    src = _bucket(a, f"sso-src-{uuid.uuid4().hex[:8]}", KEYS)
    start = "https://batchops-test.awsapps.com/start"
    expires = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
    keys = _temporary(a, "sso")

    def portal(method: str, path: str, headers) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
        if method == "GET" and path.startswith("/federation/credentials?") and \
                headers.get("x-amz-sso_bearer_token") == "cached-sso-token":
            return 200, json.dumps({"roleCredentials": {
                "accessKeyId": keys["AccessKeyId"], "secretAccessKey": keys["SecretAccessKey"],
                "sessionToken": keys["SessionToken"], "expiration": expires}}).encode()
        return 401, b'{"message": "Session token not found or invalid"}'

    with _Loopback(portal) as service:
        sso = ("sso_session = corp\n" if form == "sso-session" else
               f"sso_start_url = {start}\nsso_region = us-east-1\n")
        config = (f"[profile dev]\n{sso}sso_account_id = 123456789012\n"
                  "sso_role_name = Copier\nregion = us-east-1\nservices = loopback\n\n"
                  f"[services loopback]\nsso =\n  endpoint_url = {service.url}\n"
                  f"s3 =\n  endpoint_url = {a.endpoint}\n")
        if form == "sso-session":
            config += (f"\n[sso-session corp]\nsso_start_url = {start}\n"
                       "sso_region = us-east-1\nsso_registration_scopes = sso:account:access\n")
        _profiles(aws_home, config)
        cache = aws_home / ".aws" / "sso" / "cache"
        cache.mkdir(parents=True)
        named = "corp" if form == "sso-session" else start
        (cache / f"{hashlib.sha1(named.encode()).hexdigest()}.json").write_text(json.dumps({
            "startUrl": start, "region": "us-east-1", "accessToken": "cached-sso-token",
            "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")}))
        m = write_manifest(tmp_path / "m.csv", [(src, k) for k in KEYS])
        proc = cli("run", "--profile", "dev", "--manifest", str(m), "--operation",
                   "put-tagging", "--tag", "from=sso", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        assert a.client().get_object_tagging(Bucket=src, Key="a.txt")["TagSet"] == [
            {"Key": "from", "Value": "sso"}]
        assert any(path.startswith("/federation/credentials?role_name=Copier&account_id="
                                   "123456789012") for _, path, _ in service.asked)
        # A login the portal no longer takes: one sentence naming the profile, no task.
        token = next(cache.iterdir())
        token.write_text(token.read_text().replace("cached-sso-token", "revoked-sso-token"))
        proc = cli("run", "--profile", "dev", "--manifest", str(m), "--operation",
                   "put-tagging", "--tag", "from=revoked", "--no-progress")
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert "--profile dev: cannot get AWS credentials" in line and "invalid" in line, line


def test_runner_flags_become_the_settings_of_the_jobs_it_runs(cli, stores, aws_home: Path,
                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _ = stores
    name = _bucket(a, "runner-flags", {"k1": b"1", "k2": b"2"})
    _profiles(aws_home, f"[profile old]\nregion = us-east-1\nservices = s\n"
                        f"[services s]\ns3 =\n  endpoint_url = {a.endpoint}\n",
              _keyed(a, "old"))
    m = write_manifest(tmp_path / "m.csv", [(name, "k1"), (name, "k2")])
    made = cli("create-job", "--profile", "old", "--manifest", json.dumps(
        {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
         "Location": {"ObjectArn": f"file://{m}",
                      "ETag": hashlib.md5(m.read_bytes()).hexdigest()}}),
        "--operation", json.dumps({"S3PutObjectTagging": {"TagSet": [{"Key": "t",
                                                                      "Value": "v"}]}}),
        "--report", json.dumps({"Enabled": False}), "--priority", "10", check=True)
    job_id = json.loads(made.stdout)["JobId"]
    # The job's profile is gone; the runner gives it a new one (same keys, new name).
    _profiles(aws_home, f"[profile new]\nregion = us-east-1\nendpoint_url = {a.endpoint}\n",
              _keyed(a, "new"))
    done = cli("runner", "--profile", "new", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0]) == {"JobId": job_id, "Status": "Complete"}
    s3 = a.client()
    assert s3.get_object_tagging(Bucket=name, Key="k2")["TagSet"] == [{"Key": "t", "Value": "v"}]
    described = json.loads(cli("describe-job", "--job-id", job_id, "--extended",
                               check=True).stdout)
    assert described["Job"]["Status"] == "Complete"


def test_temporary_credentials_are_refreshed_while_the_job_runs(
        cli, stores, aws_home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Temporary credentials that come close to their expiry (inside botocore's refresh
    window: 15 minutes) are fetched again while the job runs, and the clients sign with
    the new ones: the credential_process runs more than once per process, and every
    task succeeds."""
    a, _ = stores
    script = tmp_path / "creds.py"
    calls = tmp_path / "calls"
    script.write_text(
        "import datetime, json\n"
        f"open({str(calls)!r}, 'a').write('x')\n"
        "expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=12)\n"
        f"print(json.dumps({{'Version': 1, 'AccessKeyId': {a.access_key!r}, "
        f"'SecretAccessKey': {a.secret_key!r}, "
        "'Expiration': expires.strftime('%Y-%m-%dT%H:%M:%SZ')}))\n")
    _profiles(aws_home, f"[default]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", a.endpoint)
    src = _bucket(a, "refresh-src", {f"k{i:03d}": b"v" for i in range(60)})
    m = write_manifest(tmp_path / "m.csv", [(src, f"k{i:03d}") for i in range(60)])
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "r=1",
               "--no-progress", "--workers", "1", "--chunk-size", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Job"]["ProgressSummary"]["NumberOfTasksSucceeded"] == 60
    assert len(calls.read_text()) > 2, calls.read_text()  # more than once per process
