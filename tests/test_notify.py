"""`--notify`: an event on each status change of a job, delivered to a real receiver on
loopback (an HTTP server in this test, or a command), retried, and never holding the job."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchops.schedule.notify import Notifier, Target
from helpers import error_lines, write_manifest


class Receiver:
    """An HTTP server on loopback that records every POSTed event; the first `fail`
    requests are answered 503 (with Retry-After: 0)."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict] = []
        self.requests = 0
        self.fail = fail
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                if receiver.requests <= receiver.fail:
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert self.headers["Content-Type"] == "application/json"
                receiver.events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self) -> list[str]:
        return [e["detail"]["serviceEventDetails"]["status"] for e in self.events]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _files(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        (src / f"k{i:04d}").write_bytes(b"x" * 10)
    return write_manifest(tmp_path / "m.csv", [(f"file://{src}", f"k{i:04d}")
                                               for i in range(n)])


def _run(cli, tmp_path: Path, notify: str, n: int = 20, *extra: str):  # type: ignore[no-untyped-def]
    return cli("run", "--manifest", str(_files(tmp_path, n)), "--operation", "copy",
               "--target", f"file://{tmp_path / 'out'}", "--no-progress", "--json",
               "--notify", notify, *extra)


def test_receiver_sees_every_status_change_in_order(cli, tmp_path, receiver) -> None:
    proc = _run(cli, tmp_path, receiver.url)
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert receiver.statuses() == ["New", "Preparing", "Ready", "Active", "Completing",
                                   "Complete"]
    first, last = receiver.events[0], receiver.events[-1]
    assert first["detail"]["eventName"] == "JobCreated"
    assert {e["detail"]["eventName"] for e in receiver.events[1:]} == {"JobStatusChanged"}
    previous = [e["detail"]["previousStatus"] for e in receiver.events]
    assert previous == [None, *receiver.statuses()[:-1]]
    # The EventBridge envelope, with the CloudTrail record's serviceEventDetails.
    account = job["JobArn"].split(":")[4]
    for e in receiver.events:
        assert e["version"] == "0" and e["source"] == "batchops"
        assert e["account"] == account and e["resources"] == [job["JobArn"]]
        assert e["time"].endswith("Z") and e["detail-type"]
        details = e["detail"]["serviceEventDetails"]
        assert details["jobId"] == job["JobId"] and details["jobArn"] == job["JobArn"]
        assert len(details["jobEventId"]) == 32
        assert details["failureCodes"] == [] and details["statusChangeReason"] == []
    assert len({e["id"] for e in receiver.events}) == len(receiver.events)
    assert last["detail"]["progressSummary"]["NumberOfTasksSucceeded"] == 20


def test_a_failed_job_says_why(cli, tmp_path, receiver) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("only-a-bucket\n")
    proc = cli("run", "--manifest", str(bad), "--operation", "noop", "--no-progress",
               "--notify", receiver.url)
    assert proc.returncode != 0
    assert receiver.statuses() == ["New", "Preparing", "Failed"]
    details = receiver.events[-1]["detail"]["serviceEventDetails"]
    assert details["failureCodes"] == ["ManifestInvalid"]
    assert details["statusChangeReason"] and "line 1" in details["statusChangeReason"][0]


def test_retried_until_the_receiver_answers(cli, tmp_path) -> None:
    flaky = Receiver(fail=3)  # the first event is refused three times
    try:
        proc = _run(cli, tmp_path, flaky.url)
        assert proc.returncode == 0, proc.stderr
        assert flaky.statuses() == ["New", "Preparing", "Ready", "Active", "Completing",
                                    "Complete"]
        assert flaky.requests == 6 + 3
    finally:
        flaky.close()


def test_the_command_form_gets_each_event_on_stdin(cli, tmp_path) -> None:
    out = tmp_path / "events.jsonl"
    script = tmp_path / "sink.py"
    script.write_text("import sys\n"
                      "with open(sys.argv[1], 'a') as f:\n"
                      "    f.write(sys.stdin.read().replace('\\n', ' ') + '\\n')\n")
    argv = json.dumps([sys.executable, str(script), str(out)])
    proc = _run(cli, tmp_path, f"command:{argv}")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["detail"]["serviceEventDetails"]["status"] for e in events] == [
        "New", "Preparing", "Ready", "Active", "Completing", "Complete"]


def test_a_dead_receiver_neither_fails_nor_holds_the_job(cli, tmp_path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = _run(cli, tmp_path, f"http://127.0.0.1:{port}/x?token=SECRET")
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Job"]["Status"] == "Complete"
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:1] == ["k0000"]
    assert took < 30
    assert "could not be delivered" in proc.stderr or "not delivered" in proc.stderr
    assert "SECRET" not in proc.stderr
    store = next((cli.home / "jobs").iterdir())
    assert "SECRET" not in (store / "job.json").read_text() + (store / "log").read_text()


@pytest.mark.parametrize("value, words", [
    ("ftp://example.com/x", "neither an http(s) URL"),
    ("http://", "neither an http(s) URL"),
    ("http://host:port/x", "port is not a number"),
    ("command:prog", "JSON list of strings"),
    ("command:[]", "JSON list of strings"),
    ('command:["no-such-program-batchops"]', "not an executable program"),
])
def test_a_bad_value_is_one_sentence_before_anything_runs(cli, tmp_path, value, words) -> None:
    proc = _run(cli, tmp_path, value)
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not (cli.home / "jobs").exists() or not list((cli.home / "jobs").iterdir())
    assert not (tmp_path / "out").exists()


def test_publish_never_blocks_and_keeps_the_newest() -> None:
    """A receiver that never answers: the queue stays bounded, publish returns at once,
    and the oldest waiting events are the ones dropped."""
    gate = threading.Event()
    seen: list[bytes] = []

    class Stuck(Target):
        def send(self, body: bytes) -> None:
            gate.wait()
            seen.append(body)

    notifier = Notifier(Stuck(url="http://127.0.0.1:1/"), warn=lambda m: None,
                        queue_limit=5)
    start = time.monotonic()
    for i in range(100):
        notifier.publish({"n": i})
    assert time.monotonic() - start < 1.0
    gate.set()
    notifier.close(grace=5)
    numbers = [json.loads(b)["n"] for b in seen]
    assert numbers == sorted(numbers) and numbers[-5:] == [95, 96, 97, 98, 99]
    assert notifier.dropped == 100 - len(numbers)


def _copy_request(tmp_path: Path, n: int, **members: object) -> dict:
    import hashlib

    manifest = _files(tmp_path, n)
    return {
        "AccountId": "123456789012", "Priority": 10, "RoleArn": "arn:aws:iam::1:role/x",
        "ConfirmationRequired": False, "Report": {"Enabled": False},
        "Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path / 'out'}"}},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                              "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": f"file://{manifest}",
                                  "ETag": hashlib.md5(manifest.read_bytes()).hexdigest()}},
        **members}


def test_runner_notifies_the_jobs_it_runs(cli, tmp_path, receiver) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(_copy_request(tmp_path, 10)))
    job_id = json.loads(cli("create-job", "--cli-input-json", f"file://{path}",
                            check=True).stdout)["JobId"]
    cli("runner", "--notify", receiver.url, check=True)
    assert receiver.statuses() == ["Active", "Completing", "Complete"]
    assert {e["detail"]["serviceEventDetails"]["jobId"] for e in receiver.events} == {job_id}
    assert receiver.events[0]["detail"]["previousStatus"] == "Ready"


def test_serve_notifies_creation_confirmation_and_the_run(cli, tmp_path, receiver) -> None:
    """boto3 against `batchops serve --notify`: the job created (ConfirmationRequired),
    confirmed through the API, then run by the server's runner."""
    import re
    import subprocess

    import boto3
    import botocore.config

    proc = subprocess.Popen([sys.executable, "-m", "batchops", "serve", "--listen",
                             "127.0.0.1:0", "--auth", "none", "--notify", receiver.url],
                            env=cli.env(), stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"listening on (http://\S+)", line)
        assert url, line
        client = boto3.client(
            "s3control", endpoint_url=url.group(1), region_name="us-east-1",
            aws_access_key_id="anyone", aws_secret_access_key="anything",
            config=botocore.config.Config(proxies={"http": url.group(1)}))
        request = _copy_request(tmp_path, 10, ConfirmationRequired=True)
        job_id = client.create_job(**request)["JobId"]
        deadline = time.monotonic() + 30
        while "Suspended" not in receiver.statuses() and time.monotonic() < deadline:
            time.sleep(0.1)
        client.update_job_status(AccountId="123456789012", JobId=job_id,
                                 RequestedJobStatus="Ready")
        while "Complete" not in receiver.statuses() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert receiver.statuses() == ["New", "Preparing", "Suspended", "Ready", "Active",
                                   "Completing", "Complete"]
    assert {e["account"] for e in receiver.events} == {"123456789012"}


def test_a_job_kept_on_an_object_store_notifies_too(cli, s3, bucket, tmp_path,
                                                    receiver) -> None:
    """--job-store s3://...: job.json is written by ObjectJobStore; the same events."""
    proc = _run(cli, tmp_path, receiver.url, 20, "--job-store", f"s3://{bucket}/home")
    assert proc.returncode == 0, proc.stderr
    assert receiver.statuses() == ["New", "Preparing", "Ready", "Active", "Completing",
                                   "Complete"]
