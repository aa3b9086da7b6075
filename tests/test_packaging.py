"""batchops installs beside the AWS tools (issue 11 §6): this environment was made by
`pip install -e '.[test]'`, which brings awscli and boto3 too, and `pip check` finds
nothing broken; the aws command runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def test_pip_check_is_clean_with_awscli_and_boto3() -> None:
    assert version("awscli") and version("boto3") and version("aiobotocore")
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_aws_command_runs_beside_batchops() -> None:
    aws = Path(sys.executable).with_name("aws")
    exe = str(aws) if aws.exists() else shutil.which("aws")
    assert exe, "no aws command in this environment"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "aws-cli/" in proc.stdout + proc.stderr, proc.stderr
