"""Test fixtures: a real S3-API server (moto in server mode) on loopback, a job home,
and a runner for the real `batchops` CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ACCESS_KEY = "AKIATESTBATCHOPS0001"
SECRET_KEY = "batchops-test-secret-key-3f9a1c7e5b"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Start `moto_server` on a free loopback port for the whole session."""
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def aws_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS settings batchops reads, pointing at the loopback S3 server."""
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return env


@pytest.fixture
def s3(aws_env: dict[str, str], s3_endpoint: str):  # type: ignore[no-untyped-def]
    """An independent client (boto3) to set up and read back objects."""
    return boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION)


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("BATCHOPS_HOME", str(h))
    return h


class CLI:
    """Runs the real `batchops` command in a subprocess."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["BATCHOPS_HOME"] = str(self.home)
        return env

    def __call__(self, *args: str, check: bool = False, timeout: float = 300,
                 **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        proc = subprocess.run([sys.executable, "-m", "batchops", *args], capture_output=True,
                              text=True, env=self.env(), timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"batchops {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str, **kw) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
        return subprocess.Popen([sys.executable, "-m", "batchops", *args], text=True,
                                env=self.env(), **kw)


@pytest.fixture
def cli(home: Path) -> CLI:
    return CLI(home)
