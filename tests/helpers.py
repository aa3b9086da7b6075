"""Shared test helpers: reading completion reports back and checking them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus


def enc(key: str) -> str:
    return quote_plus(key, safe="/")


def write_manifest(path: Path, rows: list[tuple[str, ...]]) -> Path:
    """Write an Amazon CSV manifest (keys URL-encoded)."""
    lines = []
    for row in rows:
        bucket, key, *rest = row
        lines.append(",".join([bucket, enc(key), *rest]))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def job_id_of(stdout: str) -> str:
    return json.loads(stdout)["Job"]["JobId"]


def report_manifest_path(home: Path, job_id: str) -> Path:
    return home / "jobs" / job_id / "report" / f"job-{job_id}" / "manifest.json"


def read_report(manifest_path: Path) -> tuple[dict, list[list[str]]]:
    """Read a local report: check every part's MD5, return (manifest, rows)."""
    manifest = json.loads(manifest_path.read_text())
    root = manifest_path.parent.parent
    rows: list[list[str]] = []
    for part in manifest["Results"]:
        data = (root / part["Key"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == part["MD5Checksum"], part["Key"]
        part_rows = list(csv.reader(io.StringIO(data.decode())))
        assert all(r[3] == part["TaskExecutionStatus"] for r in part_rows)
        rows.extend(part_rows)
    return manifest, rows


def decoded_keys(rows: list[list[str]]) -> list[str]:
    return [unquote_plus(r[1]) for r in rows]


def error_lines(stderr: str) -> list[str]:
    """A failed command's stderr lines, without the `job <id>` line that `run` prints as
    soon as it has created the job (before preparing): a failure is one sentence."""
    return [line for line in stderr.strip().splitlines()
            if not re.fullmatch(r"job [0-9a-f-]{36}", line)]
