"""`batchops serve`: the s3control jobs API, against the real server in a subprocess.

Every client here is an unchanged one: boto3's s3control client, aws-cli's `aws
s3control` commands, and botocore's own parser reading the raw answers (the oracle).
The server is reached both ways botocore's `ACCOUNT.HOST` host names allow: as an HTTP
proxy (no DNS), and by a host name resolved by the system's resolver (a hosts file
bind-mounted in a mount namespace of the client's own, since this machine has no
wildcard DNS).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from helpers import read_report, write_manifest

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/batchops"
KEY_A = ("AKIASERVETESTA000001", "serve-test-secret-a-7f3e9c1b")
KEY_B = ("AKIASERVETESTB000002", "serve-test-secret-b-2d8a4e6f")


class Server:
    """`batchops serve` on a free loopback port, in a process group of its own."""

    def __init__(self, home: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.flags = flags
        self.env = {**os.environ, "BATCHOPS_HOME": str(home), **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.banner = ""

    def start(self, port: int = 0) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchops", "serve", "--listen", f"127.0.0.1:{port}",
             *self.flags], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, start_new_session=True)
        assert self.proc.stderr is not None
        ready, _, _ = select.select([self.proc.stderr], [], [], 60)
        assert ready, "batchops serve printed nothing in 60 s"
        self.banner = self.proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in self.banner, self.banner + \
            self.proc.stderr.read()
        self.port = int(self.banner.split("127.0.0.1:")[1].split()[0])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its worker processes
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy settings are each test's own: a NO_PROXY naming 127.0.0.1 would send a
    client that takes its proxy from the environment around the server."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY",
                 "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """A factory of started servers on `tmp_path/home`; all stopped at the end."""
    started: list[Server] = []

    def start(*flags: str, env: dict[str, str] | None = None, port: int = 0) -> Server:
        server = Server(tmp_path / "home", *flags, env=env).start(port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def s3control(server: Server, key: tuple[str, str] = ("anyone", "anything"),
              proxy: bool = True) -> Any:
    """boto3's s3control client, unchanged: the server as its HTTP proxy."""
    config = botocore.config.Config(
        proxies={"http": server.url} if proxy else None,
        retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("s3control", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=config)


def _objects(tmp_path: Path, n: int, name: str = "src") -> tuple[Path, list[str]]:
    src = tmp_path / name
    src.mkdir()
    keys = [f"dir/{i:04d} k+{i}%.txt" for i in range(n)]
    for k in keys:
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_bytes(k.encode() * 3)
    return src, keys


def copy_request(tmp_path: Path, n: int = 5, **members: Any) -> tuple[dict[str, Any], list[str]]:
    """A CreateJob request copying `n` local objects into tmp_path/out (report in the
    job's folder)."""
    src, keys = _objects(tmp_path, n, f"src-{uuid.uuid4().hex[:6]}")
    m = write_manifest(tmp_path / f"m-{uuid.uuid4().hex[:6]}.csv",
                       [(f"file://{src}", k) for k in keys])
    request = {
        "AccountId": ACCOUNT, "RoleArn": ROLE, "Priority": 10,
        "ClientRequestToken": str(uuid.uuid4()),
        "Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path / 'out'}"}},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                              "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": f"file://{m}",
                                  "ETag": hashlib.md5(m.read_bytes()).hexdigest()}},
        "Report": {"Enabled": True, "Format": "Report_CSV_20180820",
                   "ReportScope": "AllTasks", "Bucket": f"file://{tmp_path / 'reports'}"},
        "ConfirmationRequired": False,
    }
    request.update(members)
    return request, keys


def wait_status(client: Any, job_id: str, statuses: set[str], timeout: float = 120,
                account: str = ACCOUNT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.describe_job(AccountId=account, JobId=job_id)["Job"]
        if job["Status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['Status']}"
        time.sleep(0.1)


def report_rows(tmp_path: Path, job_id: str) -> list[list[str]]:
    _, rows = read_report(tmp_path / "reports" / f"job-{job_id}" / "manifest.json")
    return rows


def test_boto3_client_unchanged_creates_confirms_runs_tags_and_cancels(serve, tmp_path) -> None:
    server = serve()
    c = s3control(server)
    request, keys = copy_request(tmp_path, 5, ConfirmationRequired=True,
                                 Description="first job", Tags=[{"Key": "team", "Value": "a"}])
    job_id = c.create_job(**request)["JobId"]
    # Suspended once prepared: it awaits confirmation.
    job = wait_status(c, job_id, {"Suspended"})
    assert job["ConfirmationRequired"] is True
    assert job["SuspendedCause"] == "AwaitingConfirmation"
    assert job["Description"] == "first job"
    assert job["RoleArn"] == ROLE
    assert job["JobArn"].endswith(f":{ACCOUNT}:job/{job_id}")
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 5
    assert job["Operation"]["S3PutObjectCopy"]["TargetResource"] == f"file://{tmp_path / 'out'}"
    assert isinstance(job["CreationTime"], datetime.datetime)

    listed = c.list_jobs(AccountId=ACCOUNT)["Jobs"]
    assert [(j["JobId"], j["Status"], j["Operation"]) for j in listed] == \
        [(job_id, "Suspended", "S3PutObjectCopy")]
    assert c.list_jobs(AccountId=ACCOUNT, JobStatuses=["Suspended", "Active"])["Jobs"]
    assert c.list_jobs(AccountId=ACCOUNT, JobStatuses=["Complete"])["Jobs"] == []

    assert c.get_job_tagging(AccountId=ACCOUNT, JobId=job_id)["Tags"] == \
        [{"Key": "team", "Value": "a"}]
    c.put_job_tagging(AccountId=ACCOUNT, JobId=job_id,
                      Tags=[{"Key": "team", "Value": "b"}, {"Key": "cost", "Value": "7"}])
    assert c.get_job_tagging(AccountId=ACCOUNT, JobId=job_id)["Tags"] == \
        [{"Key": "team", "Value": "b"}, {"Key": "cost", "Value": "7"}]
    c.delete_job_tagging(AccountId=ACCOUNT, JobId=job_id)
    assert c.get_job_tagging(AccountId=ACCOUNT, JobId=job_id)["Tags"] == []

    out = c.update_job_priority(AccountId=ACCOUNT, JobId=job_id, Priority=42)
    assert (out["JobId"], out["Priority"]) == (job_id, 42)
    assert c.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]["Priority"] == 42

    out = c.update_job_status(AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Ready",
                              StatusUpdateReason="looks right")
    assert (out["JobId"], out["Status"]) == (job_id, "Ready")
    job = wait_status(c, job_id, {"Complete", "Failed"})
    assert job["Status"] == "Complete", job
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 5
    assert isinstance(job["TerminationDate"], datetime.datetime)
    assert sorted((tmp_path / "out" / k).read_bytes() for k in keys) == \
        sorted(k.encode() * 3 for k in keys)
    assert len(report_rows(tmp_path, job_id)) == 5
    assert [j["JobId"] for j in c.list_jobs(AccountId=ACCOUNT,
                                            JobStatuses=["Complete"])["Jobs"]] == [job_id]

    # A second one, cancelled while it awaits confirmation.
    request, _ = copy_request(tmp_path, 3, ConfirmationRequired=True)
    second = c.create_job(**request)["JobId"]
    wait_status(c, second, {"Suspended"})
    out = c.update_job_status(AccountId=ACCOUNT, JobId=second,
                              RequestedJobStatus="Cancelled")
    assert out["Status"] == "Cancelled"
    assert wait_status(c, second, {"Cancelled"})["Status"] == "Cancelled"
    # Newest first.
    assert [j["JobId"] for j in c.list_jobs(AccountId=ACCOUNT)["Jobs"]] == [second, job_id]

    # Amazon's error codes, parsed by botocore.
    with pytest.raises(ClientError) as err:
        c.describe_job(AccountId=ACCOUNT, JobId="00000000-0000-0000-0000-000000000000")
    assert err.value.response["Error"]["Code"] == "NotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        c.update_job_status(AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
    assert err.value.response["Error"]["Code"] == "JobStatusException"
    with pytest.raises(ClientError) as err:
        c.put_job_tagging(AccountId=ACCOUNT, JobId=job_id,
                          Tags=[{"Key": f"k{i}", "Value": ""} for i in range(51)])
    assert err.value.response["Error"]["Code"] == "TooManyTagsException"
    bad, _ = copy_request(tmp_path, 1, Operation={
        "S3PutObjectCopy": {"TargetResource": "file:///tmp"},
        "S3PutObjectTagging": {"TagSet": []}})  # two operations: refused by the server
    with pytest.raises(ClientError) as err:
        c.create_job(**bad)
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    # The same ClientRequestToken for another request.
    again = dict(request, Description="not the same request")
    with pytest.raises(ClientError) as err:
        c.create_job(**again)
    assert err.value.response["Error"]["Code"] == "IdempotencyException"
    # ... and for the same one: the same job.
    assert c.create_job(**request)["JobId"] == second


def test_create_job_answers_before_the_job_is_prepared(serve, tmp_path) -> None:
    """CreateJob returns once job.json exists; the preparing pass runs on (held here at
    its failpoint), and the job is Ready and runs once it is let go."""
    server = serve(env={"BATCHOPS_FAILPOINT": "preparing"})
    c = s3control(server)
    request, _ = copy_request(tmp_path, 4)
    job_id = c.create_job(**request)["JobId"]
    hold = server.home / "jobs" / job_id / "failpoint.preparing"
    deadline = time.monotonic() + 30
    while not hold.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert c.describe_job(AccountId=ACCOUNT, JobId=job_id)["Job"]["Status"] == "Preparing"
    assert [j["Status"] for j in c.list_jobs(AccountId=ACCOUNT)["Jobs"]] == ["Preparing"]
    hold.unlink()
    assert wait_status(c, job_id, {"Complete", "Failed"})["Status"] == "Complete"


def test_list_jobs_pages_with_a_stable_next_token(serve, tmp_path) -> None:
    server = serve()
    c = s3control(server)
    made = []
    for _ in range(7):
        request, _ = copy_request(tmp_path, 1, ConfirmationRequired=True)
        made.append(c.create_job(**request)["JobId"])
    for job_id in made:
        wait_status(c, job_id, {"Suspended"})
    page = c.list_jobs(AccountId=ACCOUNT, MaxResults=3)
    seen = [j["JobId"] for j in page["Jobs"]]
    assert len(seen) == 3 and page["NextToken"]
    # A job created between two pages comes before the first page: no page moves.
    request, _ = copy_request(tmp_path, 1, ConfirmationRequired=True)
    newest = c.create_job(**request)["JobId"]
    token = page["NextToken"]
    while token:
        page = c.list_jobs(AccountId=ACCOUNT, MaxResults=3, NextToken=token)
        seen += [j["JobId"] for j in page["Jobs"]]
        token = page.get("NextToken")
    assert seen == list(reversed(made))
    assert newest not in seen
    # From the start again: the new job first, then the same order.
    wait_status(c, newest, {"Suspended"})
    assert [j["JobId"] for j in c.list_jobs(AccountId=ACCOUNT)["Jobs"]] == \
        [newest, *reversed(made)]
    assert [j["JobId"] for j in c.list_jobs(AccountId=ACCOUNT, MaxResults=2,
                                            JobStatuses=["Suspended"])["Jobs"]] == \
        [newest, made[-1]]
    with pytest.raises(ClientError) as err:
        c.list_jobs(AccountId=ACCOUNT, NextToken="not-a-token-of-ours")
    assert err.value.response["Error"]["Code"] == "InvalidNextTokenException"
    # Not an operation of the API: Amazon's error shape all the same.
    from botocore.parsers import RestXMLParser

    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/v20180820/jobs/x/nothing", method="DELETE"), timeout=30)
    error = RestXMLParser().parse({"status_code": 404, "headers": {},
                                   "body": http.value.read()}, None)["Error"]
    assert http.value.code == 404 and error["Code"] == "NotFound", error


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys, boto3, botocore.config
    port, account = sys.argv[1], sys.argv[2]
    c = boto3.client("s3control", endpoint_url=f"http://localhost:{port}",
                     region_name="us-east-1", aws_access_key_id="a",
                     aws_secret_access_key="b",
                     config=botocore.config.Config(retries={"max_attempts": 1}))
    seen = []
    def host(request, **kw):
        seen.append(request.url)
    c.meta.events.register("before-send.s3-control.*", host)
    jobs = c.list_jobs(AccountId=account)["Jobs"]
    print(json.dumps({"urls": seen, "jobs": [j["JobId"] for j in jobs]}))
""")


def test_a_host_name_resolved_to_the_server(serve, tmp_path) -> None:
    """No proxy: botocore connects to ACCOUNT.localhost, which the client's resolver finds
    in a hosts file (bind-mounted over /etc/hosts in a mount namespace of its own: the
    machine's files are untouched)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to give the client its own /etc/hosts")
    server = serve()
    request, _ = copy_request(tmp_path, 1, ConfirmationRequired=True)
    job_id = s3control(server).create_job(**request)["JobId"]
    hosts = tmp_path / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() +
                     f"\n127.0.0.1 {ACCOUNT}.localhost {OTHER}.localhost\n")
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)

    def run(account: str) -> dict[str, Any]:
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
             str(hosts), sys.executable, str(script), str(server.port), account],
            capture_output=True, text=True, timeout=60,
            env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    mine = run(ACCOUNT)
    assert mine["urls"] == [f"http://{ACCOUNT}.localhost:{server.port}/v20180820/jobs"]
    assert mine["jobs"] == [job_id]
    assert run(OTHER)["jobs"] == []
    # Outside the namespace, the name does not resolve: the hosts file made the difference.
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(f"{ACCOUNT}.localhost", server.port)


def _aws(server: Server, *args: str, proxy_env: bool = True) -> Any:
    """`aws s3control ...` (aws-cli, unchanged), the server as its proxy through
    HTTP_PROXY; its JSON output."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b", AWS_DEFAULT_REGION="us-east-1",
               AWS_MAX_ATTEMPTS="1")
    env.pop("AWS_ENDPOINT_URL", None)
    if proxy_env:
        env["HTTP_PROXY"] = server.url
    aws = Path(sys.executable).with_name("aws")
    cmd = [str(aws)] if aws.exists() else [sys.executable, "-m", "awscli"]
    proc = subprocess.run([*cmd, "s3control", *args, "--endpoint-url", server.url,
                           "--output", "json"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_aws_cli_s3control_commands_from_the_aws_docs(serve, tmp_path) -> None:
    """The commands of the AWS documentation's S3 Batch Operations examples."""
    server = serve()
    request, keys = copy_request(tmp_path, 3)
    created = _aws(
        server, "create-job", "--account-id", ACCOUNT,
        "--operation", json.dumps(request["Operation"]),
        "--manifest", json.dumps(request["Manifest"]),
        "--report", json.dumps(request["Report"]),
        "--priority", "10", "--role-arn", ROLE,
        "--client-request-token", str(uuid.uuid4()), "--description", "from aws-cli",
        "--confirmation-required")
    job_id = created["JobId"]
    deadline = time.monotonic() + 60
    while _aws(server, "describe-job", "--account-id", ACCOUNT, "--job-id",
               job_id)["Job"]["Status"] != "Suspended":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    listed = _aws(server, "list-jobs", "--account-id", ACCOUNT, "--job-statuses",
                  "Suspended", "Ready")
    assert [j["JobId"] for j in listed["Jobs"]] == [job_id]
    assert listed["Jobs"][0]["Description"] == "from aws-cli"
    assert _aws(server, "update-job-priority", "--account-id", ACCOUNT, "--job-id", job_id,
                "--priority", "20")["Priority"] == 20
    _aws(server, "put-job-tagging", "--account-id", ACCOUNT, "--job-id", job_id,
         "--tags", "Key=stage,Value=test")
    assert _aws(server, "get-job-tagging", "--account-id", ACCOUNT, "--job-id",
                job_id)["Tags"] == [{"Key": "stage", "Value": "test"}]
    assert _aws(server, "update-job-status", "--account-id", ACCOUNT, "--job-id", job_id,
                "--requested-job-status", "Ready")["Status"] == "Ready"
    while _aws(server, "describe-job", "--account-id", ACCOUNT, "--job-id",
               job_id)["Job"]["Status"] not in ("Complete", "Failed"):
        assert time.monotonic() < deadline + 60
        time.sleep(0.2)
    job = _aws(server, "describe-job", "--account-id", ACCOUNT, "--job-id", job_id)["Job"]
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 3
    assert _aws(server, "list-jobs", "--account-id", ACCOUNT, "--job-statuses",
                "Complete")["Jobs"][0]["JobId"] == job_id
    _aws(server, "delete-job-tagging", "--account-id", ACCOUNT, "--job-id", job_id)


def _keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(f"[team-a]\naws_access_key_id = {KEY_A[0]}\naws_secret_access_key = "
                    f"{KEY_A[1]}\naws_account_id = {ACCOUNT}\n\n[team-b]\naws_access_key_id"
                    f" = {KEY_B[0]}\naws_secret_access_key = {KEY_B[1]}\naws_account_id = "
                    f"{OTHER}\n")
    path.chmod(0o600)
    return path


def _signed(server: Server, method: str, path: str, body: bytes = b"",
            account: str = ACCOUNT, key: tuple[str, str] = KEY_A,
            when: datetime.datetime | None = None) -> Any:
    """A request signed by botocore's signer (as boto3 signs it), at `when`."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=f"http://{account}.localhost:{server.port}{path}",
                         data=body, headers={"x-amz-account-id": account})
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=when or datetime.datetime.now(datetime.UTC)):
        S3SigV4Auth(Credentials(*key), "s3", "us-east-1").add_auth(request)
    return request


def _send(server: Server, request: Any, body: bytes | None = None) -> tuple[int, dict]:
    """Send through the server as proxy; (status, botocore's parse of an error body)."""
    from botocore.parsers import RestXMLParser

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": server.url}))
    req = urllib.request.Request(request.url, data=request.body if body is None else body,
                                 method=request.method, headers=dict(request.headers))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        parsed = RestXMLParser().parse({"status_code": exc.code, "headers": dict(exc.headers),
                                        "body": exc.read()}, None)
        return exc.code, parsed["Error"]


def test_sigv4_refuses_wrong_secret_stale_date_tampered_body_other_account(serve,
                                                                          tmp_path) -> None:
    server = serve("--keys", str(_keys_file(tmp_path)))
    assert "auth sigv4" in server.banner
    a = s3control(server, KEY_A)
    request, _ = copy_request(tmp_path, 2, ConfirmationRequired=True)
    job_id = a.create_job(**request)["JobId"]
    assert [j["JobId"] for j in a.list_jobs(AccountId=ACCOUNT)["Jobs"]] == [job_id]

    # Another account's key sees none of this account's jobs, and may not act for it.
    b = s3control(server, KEY_B)
    assert b.list_jobs(AccountId=OTHER)["Jobs"] == []
    with pytest.raises(ClientError) as err:
        b.describe_job(AccountId=OTHER, JobId=job_id)
    assert err.value.response["Error"]["Code"] == "NotFoundException"
    with pytest.raises(ClientError) as err:
        b.list_jobs(AccountId=ACCOUNT)
    assert err.value.response["Error"]["Code"] == "AccessDenied"

    # A wrong secret, an unknown key: boto3 unchanged gets S3's codes.
    with pytest.raises(ClientError) as err:
        s3control(server, (KEY_A[0], "not-the-secret")).list_jobs(AccountId=ACCOUNT)
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as err:
        s3control(server, ("AKIANOSUCHKEY0000000", "x")).list_jobs(AccountId=ACCOUNT)
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    # Signed by botocore's signer, sent raw: fine now, refused 20 minutes late.
    assert _send(server, _signed(server, "GET", "/v20180820/jobs"))[0] == 200
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    status, error = _send(server, _signed(server, "GET", "/v20180820/jobs", when=stale))
    assert (status, error["Code"]) == (403, "RequestTimeTooSkewed")

    # A signed CreateJob body, changed on the way: its hash no longer matches.
    body = (b'<?xml version="1.0" encoding="UTF-8"?><CreateJobRequest xmlns='
            b'"http://awss3control.amazonaws.com/doc/2018-08-20/"><Priority>1</Priority>'
            b'</CreateJobRequest>')
    signed = _signed(server, "POST", "/v20180820/jobs", body)
    status, error = _send(server, signed, body.replace(b">1<", b">9<"))
    assert (status, error["Code"]) == (403, "XAmzContentSHA256Mismatch")
    # ... and with the hash header changed to match: the signature does not.
    signed.headers.replace_header("x-amz-content-sha256", hashlib.sha256(
        body.replace(b">1<", b">9<")).hexdigest())
    status, error = _send(server, signed, body.replace(b">1<", b">9<"))
    assert (status, error["Code"]) == (403, "SignatureDoesNotMatch")
    # Not signed at all.
    status, error = _send(server, type(signed)(method="GET", url=signed.url.replace(
        "/v20180820/jobs", "/v20180820/jobs?maxResults=1"), headers={
        "x-amz-account-id": ACCOUNT}))
    assert (status, error["Code"]) == (403, "AccessDenied")
    # No key ever reaches the job store or the server's output.
    for path in server.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert KEY_A[1].encode() not in data and KEY_B[1].encode() not in data, path


def _done_chunks(home: Path, job_id: str) -> int:
    return len(list((home / "jobs" / job_id / "chunks").glob("*.json")))


def test_kill_9_mid_job_then_restart_completes_every_row_exactly_once(serve,
                                                                      tmp_path) -> None:
    flags = ("--runners", "1", "--workers", "1", "--concurrency", "2", "--chunk-size", "10",
             "--max-ops-per-second", "60")
    server = serve(*flags)
    c = s3control(server)
    request, keys = copy_request(tmp_path, 200)
    job_id = c.create_job(**request)["JobId"]
    deadline = time.monotonic() + 60
    while _done_chunks(server.home, job_id) < 3:
        assert time.monotonic() < deadline, "no chunk done in 60 s"
        time.sleep(0.02)
    server.kill9()
    done = _done_chunks(server.home, job_id)
    assert 3 <= done < 20, done
    # The same port again (clients keep their endpoint).
    restarted = serve(*flags, port=server.port)
    c = s3control(restarted)
    job = wait_status(c, job_id, {"Complete", "Failed", "Cancelled"}, timeout=180)
    assert job["Status"] == "Complete", job
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 200
    rows = report_rows(tmp_path, job_id)
    from helpers import decoded_keys

    assert sorted(decoded_keys(rows)) == sorted(keys)  # every row, exactly once
    assert {r[3] for r in rows} == {"succeeded"}


@pytest.mark.parametrize(("flags", "says"), [
    (("--listen", "0.0.0.0:0", "--auth", "none"), "--auth none is refused on 0.0.0.0"),
    (("--listen", "0.0.0.0:0"), "--auth sigv4 needs the operators' keys"),
    (("--listen", "nowhere"), "--listen 'nowhere': expected HOST:PORT"),
    (("--listen", "127.0.0.1:0", "--runners", "0"), "--runners 0: at least 1"),
    (("--listen", "127.0.0.1:0", "--keys", "/nonexistent/keys"), "cannot read it"),
])
def test_bad_flags_one_sentence_and_a_nonzero_exit(tmp_path, flags, says) -> None:
    proc = subprocess.run([sys.executable, "-m", "batchops", "serve", *flags],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BATCHOPS_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_keys_readable_by_others_and_a_port_in_use_are_refused(tmp_path) -> None:
    keys = _keys_file(tmp_path)
    keys.chmod(0o644)
    env = {**os.environ, "BATCHOPS_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "batchops", "serve", "--keys", str(keys)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "chmod 600" in proc.stderr, proc.stderr
    assert KEY_A[1] not in proc.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "batchops", "serve", "--listen",
                               f"127.0.0.1:{port}"], capture_output=True, text=True,
                              timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"batchops: --listen 127.0.0.1:{port}: cannot listen there (Address already in use)"]


@pytest.mark.parametrize("runners", [1, 2])
def test_runners_run_the_highest_priority_first(serve, tmp_path, runners) -> None:
    """One runner: a job of higher priority pauses the running one, which resumes after
    it. Two runners: the idle one takes it, and the running job goes on."""
    server = serve("--runners", str(runners), "--workers", "1", "--concurrency", "2",
                   "--chunk-size", "10", "--max-ops-per-second", "40")
    c = s3control(server)
    low, low_keys = copy_request(tmp_path, 240, Priority=1)
    low_id = c.create_job(**low)["JobId"]
    deadline = time.monotonic() + 60
    while _done_chunks(server.home, low_id) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    high, _ = copy_request(tmp_path, 20, Priority=100)
    high_id = c.create_job(**high)["JobId"]
    seen = set()
    while True:
        low_now = c.describe_job(AccountId=ACCOUNT, JobId=low_id)["Job"]
        high_now = c.describe_job(AccountId=ACCOUNT, JobId=high_id)["Job"]["Status"]
        seen.add(low_now["Status"])
        if high_now == "Complete":
            break
        assert time.monotonic() < deadline + 60, (low_now["Status"], high_now)
        time.sleep(0.05)
    if runners == 1:
        assert "Paused" in seen, seen
    else:
        assert seen <= {"Active"}, seen
    job = wait_status(c, low_id, {"Complete", "Failed"})
    assert job["Status"] == "Complete", job
    from helpers import decoded_keys

    assert sorted(decoded_keys(report_rows(tmp_path, low_id))) == sorted(low_keys)


def test_a_job_store_on_s3(serve, tmp_path, s3, bucket) -> None:
    """--job-store s3://bucket/prefix: the index, the runners and the API on an
    object-store job home (moto_server here)."""
    server = serve("--job-store", f"s3://{bucket}/store")
    assert f"s3://{bucket}/store" in server.banner
    c = s3control(server)
    request, keys = copy_request(tmp_path, 5, ConfirmationRequired=True)
    job_id = c.create_job(**request)["JobId"]
    wait_status(c, job_id, {"Suspended"})
    deadline = time.monotonic() + 10  # the index looks at an object store every 2 s
    while [j["JobId"] for j in c.list_jobs(AccountId=ACCOUNT, JobStatuses=[
            "Suspended"])["Jobs"]] != [job_id]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    c.update_job_status(AccountId=ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
    job = wait_status(c, job_id, {"Complete", "Failed"})
    assert job["Status"] == "Complete", job
    assert len(report_rows(tmp_path, job_id)) == 5
    keys_there = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket,
                                                       Prefix="store/")["Contents"]]
    assert any(k.endswith(f"{job_id}/job.json") for k in keys_there), keys_there


def test_aws_cli_tagging_job_on_s3_buckets_named_by_arns(serve, tmp_path, s3, bucket) -> None:
    """The AWS documentation's create-job, as written there: an S3PutObjectTagging job
    whose manifest and report are S3 objects named by ARNs (moto_server's S3 here)."""
    keys = [f"photos/{i:03d} a+b.jpg" for i in range(12)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    manifest = "".join(f"{bucket},{urllib.parse.quote_plus(k, safe='/')}\n" for k in keys)
    put = s3.put_object(Bucket=bucket, Key="manifests/manifest.csv", Body=manifest.encode())
    server = serve()
    created = _aws(
        server, "create-job", "--account-id", ACCOUNT,
        "--operation", '{"S3PutObjectTagging": {"TagSet": [{"Key": "keyOne", '
                       '"Value": "ValueOne"}]}}',
        "--manifest", json.dumps({
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/manifests/manifest.csv",
                         "ETag": put["ETag"].strip('"')}}),
        "--report", json.dumps({"Bucket": f"arn:aws:s3:::{bucket}",
                                "Prefix": "final-reports", "Format": "Report_CSV_20180820",
                                "Enabled": True, "ReportScope": "AllTasks"}),
        "--priority", "42", "--role-arn", ROLE, "--client-request-token", str(uuid.uuid4()),
        "--description", "tag photos", "--no-confirmation-required")
    job_id = created["JobId"]
    deadline = time.monotonic() + 120
    while (job := _aws(server, "describe-job", "--account-id", ACCOUNT, "--job-id",
                       job_id)["Job"])["Status"] not in ("Complete", "Failed"):
        assert time.monotonic() < deadline, job["Status"]
        time.sleep(0.3)
    assert job["Status"] == "Complete", job
    assert job["Report"]["Bucket"] == f"arn:aws:s3:::{bucket}"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(keys)
    for k in keys:
        assert s3.get_object_tagging(Bucket=bucket, Key=k)["TagSet"] == \
            [{"Key": "keyOne", "Value": "ValueOne"}]
    report = s3.get_object(Bucket=bucket,
                           Key=f"final-reports/job-{job_id}/manifest.json")["Body"].read()
    assert json.loads(report)["Format"] == "Report_CSV_20180820"
