"""Errors classified by what to do (retry, fail the task, stop the job), and secrets
scrubbed from every error text that reaches a report, the log or job.json.

The classification tests feed `classify` the exceptions real clients raise (obstore,
botocore, awscrt) against a loopback server that answers what each test asks for, and
real OS errors (a full tmpfs, an exhausted descriptor limit). The end-to-end tests run
the real CLI: a full target disk and expired credentials pause the job (exit 3, one
sentence) and `resume` finishes it once the cause is fixed; a server that echoes the
request's headers leaves no credential in the job store.
"""

from __future__ import annotations

import asyncio
import errno
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

from batchops.storage.outcomes import REDACTED, Outcome, classify, scrub
from conftest import ACCESS_KEY, REGION, SECRET_KEY
from faultproxy import FaultProxy, _Request, s3_error
from helpers import job_id_of, read_report, report_manifest_path, write_manifest

SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDBatchopsTestToken+Q2x1c3Rlcg=="

# -- a loopback S3 server that answers each key with the error its name asks for ---------


class _ErrorHandler(http.server.BaseHTTPRequestHandler):
    """GET/PUT/... /<bucket>/<status>-<Code>[-<Retry-After>] answers that status, with
    S3's XML error body; the message echoes the Authorization header."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        name = unquote(self.path.split("?", 1)[0]).rsplit("/", 1)[-1]
        status_s, _, rest = name.partition("-")
        code, _, after = rest.partition("-")
        body = s3_error(code, f"{code} for you; Authorization: "
                              f"{self.headers.get('Authorization')}")
        self.send_response(int(status_s))
        self.send_header("Content-Type", "application/xml")
        if after:
            self.send_header("Retry-After", after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def error_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ErrorHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: connecting is refused


def _obstore_error(endpoint: str, key: str, method: str = "get") -> BaseException:
    import obstore as obs
    from obstore.store import S3Store

    store = S3Store("bkt", endpoint=endpoint, region=REGION, access_key_id=ACCESS_KEY,
                    secret_access_key=SECRET_KEY, session_token=SESSION_TOKEN,
                    client_options={"allow_http": True},
                    retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)})
    try:
        if method == "get":
            obs.get(store, key).bytes()
        else:
            obs.put(store, key, b"data")
    except Exception as exc:  # noqa: BLE001 - the error under test
        return exc
    raise AssertionError("the request succeeded")


def _botocore_error(endpoint: str, key: str) -> BaseException:
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, aws_session_token=SESSION_TOKEN,
        config=Config(retries={"total_max_attempts": 1}))
    try:
        client.get_object(Bucket="bkt", Key=key)
    except Exception as exc:  # noqa: BLE001 - the error under test
        return exc
    raise AssertionError("the request succeeded")


def _crt_error(endpoint: str, key: str, monkeypatch: pytest.MonkeyPatch) -> BaseException:
    import asyncio

    from batchops.model.spec import AwsSettings
    from batchops.storage.aws import AwsContext
    from batchops.storage.s3api import CrtCopier

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_REGION", REGION)

    async def copy() -> BaseException:
        try:
            await CrtCopier(AwsContext(AwsSettings())).copy("src", "k", None, "bkt", key)
        except Exception as exc:  # noqa: BLE001 - the error under test
            return exc
        raise AssertionError("the request succeeded")

    return asyncio.run(copy())


# (key the server answers, retryable, fatal, http status, error code)
SERVICE_CASES = [
    ("404-NoSuchKey", False, False, 404, "NoSuchKey"),
    ("403-AccessDenied", False, False, 403, "AccessDenied"),
    ("400-InvalidArgument", False, False, 400, "InvalidArgument"),
    ("412-PreconditionFailed", False, False, 412, "PreconditionFailed"),
    ("500-InternalError", True, False, 500, "InternalError"),
    ("503-SlowDown", True, False, 503, "SlowDown"),
    ("403-ExpiredToken", False, True, 403, "ExpiredToken"),
    ("400-ExpiredToken", False, True, 400, "ExpiredToken"),
    ("400-ExpiredTokenException", False, True, 400, "ExpiredTokenException"),
    ("403-InvalidAccessKeyId", False, True, 403, "InvalidAccessKeyId"),
    ("403-SignatureDoesNotMatch", False, True, 403, "SignatureDoesNotMatch"),
    ("400-InvalidToken", False, True, 400, "InvalidToken"),
    ("400-UnrecognizedClientException", False, True, 400, "UnrecognizedClientException"),
    ("403-RequestTimeTooSkewed", False, True, 403, "RequestTimeTooSkewed"),
]


def _check(outcome: Outcome, retryable: bool, fatal: bool, status: int, code: str) -> None:
    assert (outcome.retryable, outcome.fatal, outcome.http_status, outcome.error_code) == (
        retryable, fatal, status, code), outcome
    assert SECRET_KEY not in outcome.message and SESSION_TOKEN not in outcome.message
    assert ACCESS_KEY not in outcome.message and "Signature=" not in outcome.message.replace(
        f"Signature={REDACTED}", "")
    if fatal:  # one sentence saying what to fix
        assert "\n" not in outcome.message and "): " in outcome.message, outcome.message


@pytest.mark.parametrize(("key", "retryable", "fatal", "status", "code"), SERVICE_CASES)
def test_obstore_errors_are_classified_by_status_and_code(
        error_server: str, key: str, retryable: bool, fatal: bool, status: int,
        code: str) -> None:
    for method in ("get", "put"):
        _check(classify(_obstore_error(error_server, key, method)), retryable, fatal, status,
               code)


@pytest.mark.parametrize(("key", "retryable", "fatal", "status", "code"), SERVICE_CASES)
def test_botocore_errors_are_classified_by_status_and_code(
        error_server: str, key: str, retryable: bool, fatal: bool, status: int,
        code: str) -> None:
    _check(classify(_botocore_error(error_server, key)), retryable, fatal, status, code)


@pytest.mark.parametrize(("key", "retryable", "fatal", "status", "code"),
                         [c for c in SERVICE_CASES if c[3] != 404])
def test_awscrt_errors_are_classified_by_status_and_code(
        error_server: str, monkeypatch: pytest.MonkeyPatch, key: str, retryable: bool,
        fatal: bool, status: int, code: str) -> None:
    _check(classify(_crt_error(error_server, key, monkeypatch)), retryable, fatal, status,
           code)


def test_retry_after_is_honoured(error_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # (awscrt turns a 503 SlowDown into a named error without its headers: 429 here.)
    for exc in (_botocore_error(error_server, "503-SlowDown-7"),
                _crt_error(error_server, "429-TooManyRequests-7", monkeypatch)):
        outcome = classify(exc)
        assert outcome.retryable and outcome.throttled and outcome.retry_after == 7.0, exc
    assert classify(_botocore_error(error_server, "429-TooManyRequests-2.5")).retry_after == 2.5
    # A server asking for an hour is waited on for at most a minute.
    assert classify(_botocore_error(error_server, "503-SlowDown-3600")).retry_after == 60.0


def test_retry_after_as_an_http_date() -> None:
    import time
    from email.utils import formatdate

    from botocore.exceptions import ClientError

    when = formatdate(time.time() + 30, usegmt=True)
    exc = ClientError({"Error": {"Code": "SlowDown", "Message": "slow"},
                       "ResponseMetadata": {"HTTPStatusCode": 503,
                                            "HTTPHeaders": {"retry-after": when}}}, "GetObject")
    assert 25.0 <= classify(exc).retry_after <= 30.0


def test_obstore_unauthenticated_401_is_fatal(error_server: str) -> None:
    outcome = classify(_obstore_error(error_server, "401-Unauthorized"))
    assert outcome.fatal and not outcome.retryable and outcome.http_status == 401


@pytest.mark.parametrize("endpoint", ["refused", "dns"])
def test_an_unreachable_endpoint_is_retried_then_fatal(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = (f"http://127.0.0.1:{_closed_port()}" if endpoint == "refused"
           else "http://no-such-host.invalid:9000")
    errors = [_obstore_error(url, "k"), _botocore_error(url, "k")]
    if endpoint == "refused":  # awscrt's resolver may take long on a .invalid name
        errors.append(_crt_error(url, "k", monkeypatch))
    for exc in errors:
        outcome = classify(exc)
        assert outcome.retryable and outcome.fatal, (type(exc), outcome)
        assert outcome.error_code == "EndpointUnreachable", outcome
        assert url in outcome.message and "check the endpoint" in outcome.message, outcome.message
        assert "\n" not in outcome.message


def test_aiohttp_errors_that_aiobotocore_lets_through() -> None:
    import asyncio

    import aiohttp

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()  # the body is cut short

    async def errors() -> list[BaseException]:
        server = await asyncio.start_server(cut, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        found: list[BaseException] = []
        async with aiohttp.ClientSession() as session:
            for url in (f"http://127.0.0.1:{port}/k", f"http://127.0.0.1:{_closed_port()}/k"):
                try:
                    async with session.get(url) as response:
                        await response.read()
                except Exception as exc:  # noqa: BLE001 - the error under test
                    found.append(exc)
        server.close()
        return found

    cut_body, refused = asyncio.run(errors())
    outcome = classify(cut_body)
    assert outcome.retryable and not outcome.fatal, (cut_body, outcome)
    outcome = classify(refused)
    assert outcome.retryable and outcome.fatal and outcome.error_code == "EndpointUnreachable"


def test_no_credentials_at_all_is_fatal(error_server: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.session

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = botocore.session.get_session().create_client("s3", endpoint_url=error_server,
                                                          region_name=REGION)
    with pytest.raises(Exception) as info:  # noqa: PT011 - botocore's NoCredentialsError
        client.get_object(Bucket="bkt", Key="200-never")
    assert type(info.value).__name__ == "NoCredentialsError"
    outcome = classify(info.value)
    assert outcome.fatal and not outcome.retryable and "AWS_ACCESS_KEY_ID" in outcome.message


def test_a_dropped_connection_is_retried_not_fatal() -> None:
    for exc in (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
                BrokenPipeError(errno.EPIPE, "Broken pipe"), TimeoutError("timed out")):
        outcome = classify(exc)
        assert outcome.retryable and not outcome.fatal, (exc, outcome)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_refused_connection_is_retried_before_the_job_stops(tmp_path: Path,
                                                              driver: str) -> None:
    from batchops.model.errors import JobFatalError
    from test_loop import DRIVERS, Scripted, _chunk, _loop

    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    op = Scripted({0: [refused], 1: [refused] * 5})  # 0: a blip; 1: the endpoint is down
    loop = _loop(tmp_path, op, max_attempts=3)
    st = loop.state(_chunk(2))
    with pytest.raises(JobFatalError, match="cannot reach"):
        DRIVERS[driver](loop, st)
    assert op.calls.count(1) == 3  # every attempt was made before the job stopped
    assert 1 not in st.failures  # not a report row


# -- OS errors, by errno -------------------------------------------------------------------


def test_permission_error_on_a_path_naming_404_is_access_denied(tmp_path: Path) -> None:
    """Today's bug: the path's text "404 Not Found" made it a NoSuchKey."""
    folder = tmp_path / "404 Not Found"
    folder.mkdir()
    (folder / "k").write_bytes(b"x")
    folder.chmod(0o000)
    try:
        # A real EACCES: as root the mode is no obstacle, so open as nobody.
        code = ("import json, os, sys\n"
                "os.setgid(65534); os.setuid(65534)\n"
                "try:\n    open(sys.argv[1], 'rb')\n"
                "except PermissionError as e:\n"
                "    print(json.dumps([e.errno, e.strerror, e.filename]))\n")
        if os.geteuid() == 0:
            out = subprocess.run([sys.executable, "-c", code, str(folder / "k")],
                                 capture_output=True, text=True, check=True).stdout
            num, strerror, filename = json.loads(out)
            exc: OSError = PermissionError(num, strerror, filename)
        else:
            try:
                open(folder / "k", "rb")  # noqa: SIM115 - must fail
            except PermissionError as e:
                exc = e
            else:
                raise AssertionError("the file was readable")
    finally:
        folder.chmod(0o700)
    assert "404 Not Found" in str(exc)
    outcome = classify(exc)
    assert (outcome.http_status, outcome.error_code, outcome.retryable, outcome.fatal) == (
        403, "AccessDenied", False, False), outcome
    # The same text in a message of no known shape says nothing either.
    outcome = classify(RuntimeError("HTTP 404 Not Found <Code>NoSuchKey</Code>"))
    assert (outcome.http_status, outcome.error_code) == (500, "InternalError"), outcome


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (grown with `_grow`); unmounted afterwards."""
    path = tmp_path / "small-disk"
    _mount_tmpfs(path, "1m")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_a_full_disk_is_fatal(small_disk: Path) -> None:
    import obstore as obs
    from obstore.store import LocalStore

    try:
        with open(small_disk / "big", "wb") as f:
            f.write(b"x" * (2 << 20))
    except OSError as exc:
        os_exc: OSError = exc
    else:
        raise AssertionError("2 MiB fitted on a 1 MiB disk")
    (small_disk / "big").unlink()
    try:  # obstore's local store says it only in its message: "(os error 28)"
        obs.put(LocalStore(str(small_disk)), "big", b"x" * (2 << 20))
    except Exception as exc:  # noqa: BLE001 - the error under test
        obstore_exc: BaseException = exc
    else:
        raise AssertionError("2 MiB fitted on a 1 MiB disk")
    assert "(os error 28)" in str(obstore_exc)
    for exc in (os_exc, obstore_exc):
        outcome = classify(exc)
        assert outcome.fatal and not outcome.retryable and outcome.error_code == "ENOSPC"
        assert outcome.message.startswith("the disk is full"), outcome.message
    assert classify(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))).fatal


def test_too_many_open_files_is_fatal() -> None:
    code = ("import resource, json, tempfile\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))\n"
            "held = []\n"
            "try:\n"
            "    while True:\n        held.append(tempfile.TemporaryFile())\n"
            "except OSError as e:\n    print(json.dumps([e.errno, e.strerror]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    num, strerror = json.loads(out)
    assert num == errno.EMFILE
    outcome = classify(OSError(num, strerror))
    assert outcome.fatal and outcome.error_code == "EMFILE" and "ulimit" in outcome.message
    assert classify(OSError(errno.ENFILE, os.strerror(errno.ENFILE))).fatal


def test_other_os_errors_fail_the_task_only(tmp_path: Path) -> None:
    try:
        open(tmp_path / ("n" * 300), "wb")  # noqa: SIM115 - must fail
    except OSError as exc:
        outcome = classify(exc)
    assert (outcome.http_status, outcome.error_code, outcome.fatal) == (
        400, "KeyTooLongError", False)
    try:
        open(tmp_path / "missing", "rb")  # noqa: SIM115 - must fail
    except OSError as exc:
        outcome = classify(exc)
    assert (outcome.http_status, outcome.error_code, outcome.fatal) == (404, "NoSuchKey", False)
    outcome = classify(OSError(errno.EIO, os.strerror(errno.EIO)))
    assert (outcome.retryable, outcome.fatal, outcome.error_code) == (False, False, "EIO")


def test_obstore_refuses_a_key_as_a_path() -> None:
    """Pinned: obstore's ValueError "Could not parse path: ..." names a bad key."""
    import obstore as obs
    from obstore.store import MemoryStore

    with pytest.raises(ValueError) as info:
        obs.put(MemoryStore(), "a/../b", b"x")
    outcome = classify(info.value)
    assert (outcome.http_status, outcome.error_code, outcome.fatal) == (
        400, "InvalidObjectKey", False)


def test_a_missing_object_in_memory_is_no_such_key() -> None:
    import obstore as obs
    from obstore.store import MemoryStore

    with pytest.raises(FileNotFoundError) as info:
        obs.get(MemoryStore(), "nothing-here")
    outcome = classify(info.value)
    assert (outcome.http_status, outcome.error_code, outcome.retryable) == (
        404, "NoSuchKey", False)


# -- bugs in batchops are never report rows ----------------------------------------------


@pytest.mark.parametrize("exc", [KeyError("Bucket"), TypeError("unsupported operand"),
                                 AttributeError("'NoneType' object has no attribute 'x'"),
                                 NameError("name 'x' is not defined"), AssertionError("no"),
                                 IndexError("list index out of range"),
                                 NotImplementedError()])
def test_a_bug_in_batchops_is_raised_again(exc: BaseException) -> None:
    with pytest.raises(type(exc)) as info:
        classify(exc)
    assert info.value is exc


def test_a_real_bug_is_raised_again() -> None:
    try:
        {}["missing"]  # noqa: B018 - the bug under test
    except KeyError as exc:
        with pytest.raises(KeyError):
            classify(exc)


# -- scrubbing ----------------------------------------------------------------------------

SIGNATURE = "4f0a7b9c" * 8


@pytest.mark.parametrize(("text", "secret"), [
    (f"Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/"
     f"aws4_request, SignedHeaders=host, Signature={SIGNATURE}", SIGNATURE),
    (f"x-amz-security-token: {SESSION_TOKEN}", SESSION_TOKEN),
    (f"X-Amz-Security-Token={SESSION_TOKEN}&x=1", SESSION_TOKEN),
    (f"...&X-Amz-Signature={SIGNATURE}", SIGNATURE),
    (f"Signature={SIGNATURE}", SIGNATURE),
    (f"Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request", ACCESS_KEY),
    ("key ASIAQWERTYUIOPASDFGH used", "ASIAQWERTYUIOPASDFGH"),
    (f"see https://b.s3.amazonaws.com/k?X-Amz-Credential=x&X-Amz-Signature={SIGNATURE} now",
     SIGNATURE),
    ("sv=2022-11-02&ss=b&srt=o&sp=rwdl&se=2026-01-01T00:00:00Z&sig=c2VjcmV0c2ln%3D",
     "c2VjcmV0c2ln"),
    ("https://acct.blob.core.windows.net/c/k?sv=2022&sig=c2VjcmV0c2ln%3D", "c2VjcmV0c2ln"),
    ("could not reach https://admin:hunter2pass@example.com/x", "hunter2pass"),
    ("<SignatureProvided>deadbeefcafe</SignatureProvided>", "deadbeefcafe"),
    ("<CanonicalRequest>GET\n/k\n\nx-amz-security-token:tok3n-in-canonical\n"
     "</CanonicalRequest>", "tok3n-in-canonical"),
    ("<StringToSign>AWS4-HMAC-SHA256\n20260101T000000Z\nabcdef0123</StringToSign>",
     "abcdef0123"),
])
def test_scrub_removes_each_kind_of_secret(text: str, secret: str) -> None:
    scrubbed = scrub(text)
    assert secret not in scrubbed and (REDACTED in scrubbed or "?…" in scrubbed), scrubbed


def test_scrub_removes_secret_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    text = ("server said: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and "
            f"{SESSION_TOKEN} and wJalrXUtnFEMI%2FK7MDENG%2FbPxRfiCYEXAMPLEKEY")
    scrubbed = scrub(text)
    assert "wJalrXUtnFEMI" not in scrubbed and SESSION_TOKEN not in scrubbed, scrubbed
    assert scrubbed.startswith("server said: ")


def test_scrub_leaves_ordinary_text_alone() -> None:
    for text in ("The specified key does not exist.", "Please reduce your request rate.",
                 "could not create the copy: No space left on device",
                 "bucket data-2024 key logs/use=1/case.txt"):
        assert scrub(text) == text


def test_scrub_stops_at_the_end_of_a_secret() -> None:
    text = (f"refused (Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/x, "
            f"SignedHeaders=host, Signature={SIGNATURE}): renew them; token={SESSION_TOKEN} ok")
    assert scrub(text) == f"refused (Authorization: {REDACTED}): renew them; token={REDACTED} ok"


def test_classify_scrubs_every_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchops.storage.outcomes import TaskError

    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    outcome = classify(TaskError(500, "Lambda.Unhandled", f"echo {SESSION_TOKEN}"))
    assert SESSION_TOKEN not in outcome.message and REDACTED in outcome.message
    outcome = classify(ValueError(f"bad https://h/k?X-Amz-Signature={SIGNATURE}"))
    assert SIGNATURE not in outcome.message


def test_the_job_log_and_job_json_are_scrubbed(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from batchops.results.jobstore import JobStore

    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    store = JobStore.create("j1", str(tmp_path))
    store.log("fatal", message=f"x-amz-security-token: {SESSION_TOKEN}",
              nested={"m": [f"Signature={SIGNATURE}"]}, count=3)
    store.write({"Job": {"JobId": "j1", "StatusUpdateReason": f"token {SESSION_TOKEN}",
                         "FailureReasons": [{"FailureCode": "X",
                                             "FailureReason": f"Signature={SIGNATURE}"}]}})
    for name in ("log", "job.json"):
        text = (tmp_path / "jobs" / "j1" / name).read_text()
        assert SESSION_TOKEN not in text and SIGNATURE not in text, (name, text)
        assert REDACTED in text
    assert '"count":3' in (tmp_path / "jobs" / "j1" / "log").read_text()


# -- end to end, through the real CLI -------------------------------------------------------


class S3Stand(FaultProxy):
    """The fault proxy in front of the S3 server, with three more answers:

    - `echo`: requests for keys under these `/bucket/prefix/` paths are answered 400
      InvalidArgument with a message that echoes the request's Authorization header,
      its session token (named and bare) and the secret key (as a careless server might);
    - `sig_echo`: the same paths answered 403 SignatureDoesNotMatch with S3's debugging
      elements (StringToSign, CanonicalRequest with the token, SignatureProvided);
    - `expired`: while true, every object request is answered 403 ExpiredToken (and the
      bucket listing and preflight's probe of a key no one has too while
      `expired_listing` is true).

    It records the signatures and session tokens it saw.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, seed=10)
        self.echo: list[str] = []
        self.sig_echo: list[str] = []
        self.expired = False
        self.expired_listing = False
        self.signatures: set[str] = set()
        self.tokens: set[str] = set()

    async def _forward(self, req: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        auth = req.header("authorization") or ""
        token = req.header("x-amz-security-token") or ""
        with self._lock:
            self.signatures.update(re.findall(r"Signature=([0-9a-f]{64})", auth))
            if token:
                self.tokens.add(token)
        paths = [p for p in (req.path, req.copy_source) if p]
        xml = [("Content-Type", "application/xml")]
        if any(p.startswith(prefix) for p in paths for prefix in self.sig_echo):
            body = (f"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature "
                    f"we calculated does not match the signature you provided. Authorization: "
                    f"{auth}</Message><AWSAccessKeyId>{ACCESS_KEY}</AWSAccessKeyId>"
                    f"<StringToSign>AWS4-HMAC-SHA256\n20260101T000000Z\n{auth[-64:]}"
                    f"</StringToSign><SignatureProvided>{auth[-64:]}</SignatureProvided>"
                    f"<CanonicalRequest>{req.method}\n{req.path}\n\nx-amz-security-token:"
                    f"{token}\n</CanonicalRequest></Error>").encode()
            return 403, "Forbidden", xml, body
        if any(p.startswith(prefix) for p in paths for prefix in self.echo):
            return 400, "Bad Request", xml, s3_error(
                "InvalidArgument", f"Unsupported header. Authorization: {auth}\n"
                                   f"x-amz-security-token: {token}\nechoed: {token} "
                                   f"{SECRET_KEY}")
        is_object = any(len(p.strip("/").split("/", 1)) == 2 and ".batchops-probe-" not in p
                        for p in paths)
        if (self.expired and is_object) or self.expired_listing:
            return 403, "Forbidden", xml, s3_error("ExpiredToken",
                                                   "The provided token has expired.")
        return await super()._forward(req)


@pytest.fixture
def stand(aws_env: dict[str, str], s3_endpoint: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Stand]:
    """batchops (not the `s3` fixture) talks to the S3 server through an `S3Stand`, with
    a session token set."""
    px = S3Stand(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", px.url)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    try:
        yield px
    finally:
        px.stop()


def _new_bucket(s3, suffix: str = "") -> str:  # type: ignore[no-untyped-def]
    name = f"e-{uuid.uuid4().hex[:12]}{suffix}"
    s3.create_bucket(Bucket=name)
    return name


def _job_dir(cli, job_id: str) -> Path:  # type: ignore[no-untyped-def]
    return Path(cli.home) / "jobs" / job_id


def _status(cli, job_id: str) -> str:  # type: ignore[no-untyped-def]
    return json.loads((_job_dir(cli, job_id) / "job.json").read_text())["Job"]["Status"]


def _job_id_from_stderr(stderr: str) -> str:
    found = re.search(r"\bjob ([0-9a-f]{8}-[0-9a-f-]{27})", stderr)
    assert found, stderr
    return found.group(1)


def _assert_no_secret(cli, proc, stand: S3Stand) -> None:  # type: ignore[no-untyped-def]
    secrets = {SESSION_TOKEN: "session token", SECRET_KEY: "secret key",
               ACCESS_KEY: "access key id"}
    secrets.update({sig: "signature" for sig in stand.signatures})
    files = [p for p in Path(cli.home).rglob("*") if p.is_file()]
    assert any(p.name == "log" for p in files) and any(p.name == "job.json" for p in files)
    for path in files:
        text = path.read_bytes().decode(errors="replace")
        for secret, what in secrets.items():
            assert secret not in text, f"the {what} is in {path}"
    for secret, what in secrets.items():
        assert secret not in proc.stdout + proc.stderr, f"the {what} was printed"


@pytest.mark.parametrize("target", ["s3", "local"])
def test_a_server_echoing_credentials_leaves_none_in_reports_log_or_job(
        cli, s3, stand: S3Stand, tmp_path: Path, target: str) -> None:  # type: ignore[no-untyped-def]
    src = _new_bucket(s3)
    dst = _new_bucket(s3, "-dst") if target == "s3" else ""
    good = [f"ok/{i}" for i in range(4)]
    echoed = [f"echo/{i}" for i in range(3)]
    for k in good + echoed:
        s3.put_object(Bucket=src, Key=k, Body=k.encode())
    stand.echo.append(f"/{src}/echo/")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in good + echoed])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"s3://{dst}" if dst else f"file://{tmp_path / 'out'}", "--json",
               "--no-progress", "--workers", "1", "--chunk-size", "4", timeout=120)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    # The server did see the token and signed requests, and echoed them.
    assert stand.tokens == {SESSION_TOKEN} and stand.signatures
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    by_key = {unquote(r[1]): r for r in rows}
    assert sorted(by_key) == sorted(good + echoed)
    for k in echoed:
        assert by_key[k][3:6] == ["failed", "400", "InvalidArgument"], by_key[k]
        assert REDACTED in by_key[k][6] and "Unsupported header" in by_key[k][6], by_key[k]
    _assert_no_secret(cli, proc, stand)


def test_a_fatal_error_echoing_credentials_leaves_none_in_the_job(
        cli, s3, stand: S3Stand, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _new_bucket(s3)
    keys = [f"sig/{i}" for i in range(3)]
    for k in keys:
        s3.put_object(Bucket=src, Key=k, Body=b"x")
    stand.sig_echo.append(f"/{src}/sig/")
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--no-progress", "--workers", "1", timeout=120)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "SignatureDoesNotMatch" in proc.stderr and "Traceback" not in proc.stderr
    job_id = _job_id_from_stderr(proc.stderr)
    assert _status(cli, job_id) == "Paused"
    job_text = (_job_dir(cli, job_id) / "job.json").read_text()
    assert "SignatureDoesNotMatch" in job_text  # the reason is kept, scrubbed
    _assert_no_secret(cli, proc, stand)


@pytest.mark.parametrize("target", ["s3", "local"])
def test_expired_credentials_pause_the_job_and_resume_finishes_it(
        cli, s3, stand: S3Stand, tmp_path: Path, target: str) -> None:  # type: ignore[no-untyped-def]
    src = _new_bucket(s3)
    dst = _new_bucket(s3, "-dst") if target == "s3" else ""
    out = tmp_path / "out"
    keys = [f"data/{i:03d}" for i in range(30)]
    for k in keys:
        s3.put_object(Bucket=src, Key=k, Body=k.encode() * 10)
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in keys])
    stand.expired = True
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"s3://{dst}" if dst else f"file://{out}", "--no-progress", "--workers", "2",
               "--chunk-size", "5", timeout=120)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "ExpiredToken" in line]
    assert len(lines) == 1 and "renew" in lines[0] and "resume" in lines[0], proc.stderr
    job_id = _job_id_from_stderr(proc.stderr)
    assert _status(cli, job_id) == "Paused"
    assert not report_manifest_path(cli.home, job_id).exists()

    stand.expired = False  # the credentials are renewed
    resumed = cli("resume", job_id, "--json", "--no-progress", timeout=120)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert sorted(unquote(r[1]) for r in rows) == keys  # every row, once
    assert all(r[3] == "succeeded" for r in rows), [r for r in rows if r[3] != "succeeded"]
    for k in keys:
        got = s3.get_object(Bucket=dst, Key=k)["Body"].read() if dst else (out / k).read_bytes()
        assert got == k.encode() * 10


def test_expired_credentials_before_any_task_are_one_sentence(
        cli, s3, stand: S3Stand, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _new_bucket(s3)
    m = write_manifest(tmp_path / "m.csv", [(src, "k")])
    stand.expired_listing = True  # preflight's listing is refused too
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--no-progress", timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("batchops:")]
    assert len(lines) == 1 and "ExpiredToken" in lines[0] and "renew" in lines[0], proc.stderr
    assert "resume" not in lines[0] and "Traceback" not in proc.stderr


def test_a_full_target_disk_pauses_the_job_and_resume_finishes_it(
        cli, tmp_path: Path, small_disk: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"f{i:03d}.bin" for i in range(40)]
    for i, k in enumerate(keys):
        (src / k).write_bytes(bytes([i]) * (64 << 10))  # 2.5 MiB in all, on a 1 MiB disk
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{small_disk}", "--no-progress", "--workers", "2", "--chunk-size", "5",
               timeout=120)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "the disk is full" in line]
    assert len(lines) == 1 and "free space" in lines[0] and "resume" in lines[0], proc.stderr
    job_id = _job_id_from_stderr(proc.stderr)
    assert _status(cli, job_id) == "Paused"
    assert not report_manifest_path(cli.home, job_id).exists()  # no row became a failure

    _grow(small_disk, "16m")  # space is freed
    resumed = cli("resume", job_id, "--json", "--no-progress", timeout=120)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert sorted(unquote(r[1]) for r in rows) == keys  # every row, once
    assert all(r[3] == "succeeded" for r in rows)
    for i, k in enumerate(keys):
        assert (small_disk / k).read_bytes() == bytes([i]) * (64 << 10)


class _GoesDown(FaultProxy):
    """Forwards preflight's probe; holds every later request until the test stops it
    (then the endpoint is gone: connections are cut and refused)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, seed=11)
        self.task_seen = threading.Event()

    async def _forward(self, req: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        if ".batchops-probe-" in req.path:
            return await super()._forward(req)
        self.task_seen.set()
        await asyncio.Event().wait()  # until stopped
        raise AssertionError("unreachable")


def test_an_unreachable_endpoint_pauses_the_job_and_resume_finishes_it(
        cli, s3, aws_env: dict[str, str], s3_endpoint: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"k{i}" for i in range(6)]
    for k in keys:
        (src / k).write_bytes(k.encode())
    dst = _new_bucket(s3, "-dst")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proxy = _GoesDown(s3_endpoint).start()
    dead = proxy.url
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)  # the target's endpoint goes down mid-job
    run = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                    f"s3://{dst}", "--no-progress", "--workers", "1", "--max-attempts", "3",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proxy.task_seen.wait(60), "no task reached the endpoint"
    finally:
        proxy.stop()
    out, err = run.communicate(timeout=120)
    proc = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if "cannot reach" in line]
    assert len(lines) == 1 and dead in lines[0] and "Traceback" not in proc.stderr
    job_id = _job_id_from_stderr(proc.stderr)
    assert _status(cli, job_id) == "Paused"

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # the endpoint is back
    resumed = cli("resume", job_id, "--json", "--no-progress", timeout=120)
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert sorted(unquote(r[1]) for r in rows) == keys
    for k in keys:
        assert s3.get_object(Bucket=dst, Key=k)["Body"].read() == k.encode()


def test_a_full_job_store_pauses_the_job_and_resume_finishes_it(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = Path(cli.home)
    _mount_tmpfs(home, "1m")  # the job store's disk: room for the job, not its report
    try:
        keys = [f"key-number-{i:06d}-padding-padding" for i in range(9000)]
        m = write_manifest(tmp_path / "m.csv", [(f"file://{tmp_path}", k) for k in keys])
        proc = cli("run", "--manifest", str(m), "--operation", "noop", "--no-progress",
                   "--workers", "1", "--chunk-size", "1000", timeout=120)
        assert proc.returncode == 3, (proc.stdout, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if "No space left" in line]
        assert len(lines) == 1 and "cannot write" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
        job_id = _job_id_from_stderr(proc.stderr)
        assert _status(cli, job_id) == "Paused"

        _grow(home, "16m")  # space is freed
        resumed = cli("resume", job_id, "--json", "--no-progress", timeout=120)
        assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
        _, rows = read_report(report_manifest_path(home, job_id))
        assert sorted(unquote(r[1]) for r in rows) == keys  # every row, once
        assert not list(home.rglob("*.tmp*")), list(home.rglob("*.tmp*"))
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)
