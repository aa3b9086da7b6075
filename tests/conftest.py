"""Test fixtures: a real S3-API server (moto in server mode) on loopback, a job home,
and a runner for the real `batchops` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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


def _serve(argv: list[str], port: int, what: str, env: dict[str, str] | None = None,
           wait: float = 30) -> subprocess.Popen[bytes]:
    """Start a server process and wait until it accepts connections on `port`."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not start")


def _start_moto(env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`moto_server` on a free loopback port; returns (process, endpoint)."""
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = _serve([*cmd, "-H", "127.0.0.1", "-p", str(port)], port, "moto_server", env)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Start `moto_server` on a free loopback port for the whole session."""
    proc, endpoint = _start_moto()
    yield endpoint
    proc.terminate()
    proc.wait(10)


@dataclass(frozen=True)
class KeyedStore:
    """An S3-API server that checks signatures: only its own key pair is let in."""

    endpoint: str
    access_key: str
    secret_key: str

    def client(self, service: str = "s3"):  # type: ignore[no-untyped-def]
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)


@pytest.fixture(scope="session")
def keyed_stores() -> Iterator[tuple[KeyedStore, KeyedStore]]:
    """Two moto servers on two ports, each enforcing its own keys (moto's IAM
    authentication after the first three requests, which make the user and its key)."""
    procs, stores = [], []
    for _ in range(2):
        proc, endpoint = _start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        procs.append(proc)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="batchops")
        key = iam.create_access_key(UserName="batchops")["AccessKey"]
        iam.put_user_policy(UserName="batchops", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        stores.append(KeyedStore(endpoint, key["AccessKeyId"], key["SecretAccessKey"]))
    yield stores[0], stores[1]
    for proc in procs:
        proc.terminate()
        proc.wait(10)


# Azurite's published development key (devstoreaccount1)
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")


def _azurite_binary() -> str:
    """azurite-blob on PATH, else installed once from the npm registry into a cache."""
    import shutil

    found = shutil.which("azurite-blob")
    if found:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "batchops-tests" / "azurite"
    binary = cache / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("Azurite (Azure's storage emulator) needs npm, which is not here")
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                               "--prefix", str(cache), "azurite@3"], capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0 or not binary.exists():
            pytest.skip(f"npm could not install Azurite: {done.stderr[-300:]}")
    return str(binary)


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Azure Blob Storage's emulator (Azurite) on a free loopback port; returns its URL."""
    binary = _azurite_binary()
    port = _free_port()
    proc = _serve([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                   "--skipApiVersionCheck", "--inMemoryPersistence", "--silent"],
                  port, "Azurite", wait=60)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


_AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION",
                  "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                  "AWS_ENDPOINT_URL_STS", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                  "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_SKIP_SIGNATURE")


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME with an empty ~/.aws and no AWS variable set: what batchops
    finds is only what the test writes there (instance metadata off: no network)."""
    home = tmp_path / "user"
    (home / ".aws").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


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
