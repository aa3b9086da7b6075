"""`/metrics`: Prometheus' text format, read back with prometheus_client's own parser,
whose counts are the ones `batchops describe-job` prints."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from batchops.serve.metrics import CONTENT_TYPE, metrics_body, metrics_registry
from helpers import write_manifest


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _job(cli, tmp_path: Path, name: str, n: int, missing: int, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    src = tmp_path / f"{name}-src"
    src.mkdir()
    keys = [f"k{i:03d}" for i in range(n)]
    for k in keys[missing:]:
        (src / k).write_bytes(b"data")
    m = write_manifest(tmp_path / f"{name}.csv", [(f"file://{src}", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / name}", "--no-progress", "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)["Job"]


def test_metrics_parse_and_match_describe_job(cli, tmp_path) -> None:
    jobs = [_job(cli, tmp_path, "a", 30, 0), _job(cli, tmp_path, "b", 25, 7)]
    body, ctype = metrics_body(metrics_registry(str(cli.home)))
    assert ctype == CONTENT_TYPE
    samples = _samples(body.decode())
    for listed in jobs:
        described = json.loads(cli("describe-job", "--job-id", listed["JobId"], "--extended",
                                   check=True).stdout)
        job, extra = described["Job"], described["Batchops"]
        labels = (("account", job["JobArn"].split(":")[4]), ("job_id", job["JobId"]),
                  ("operation", "S3PutObjectCopy"))
        summary = job["ProgressSummary"]
        assert samples[("batchops_job_tasks_succeeded_total", labels)] == \
            summary["NumberOfTasksSucceeded"]
        assert samples[("batchops_job_tasks_failed_total", labels)] == \
            summary["NumberOfTasksFailed"]
        assert samples[("batchops_job_tasks", labels)] == summary["TotalNumberOfTasks"]
        assert samples[("batchops_job_retries_total", labels)] == extra["Retries"]
        assert samples[("batchops_job_throttled_total", labels)] == extra["Throttled"]
        assert samples[("batchops_job_bytes_total", labels)] == extra["Bytes"] == \
            4 * summary["NumberOfTasksSucceeded"]  # each file holds b"data"
        assert ("batchops_job_bytes_per_second", labels) in samples
        assert samples[("batchops_job_priority", labels)] == job["Priority"]
        assert samples[("batchops_job_status", (*labels, ("status", job["Status"])))] == 1
        assert ("batchops_job_tasks_per_second", labels) in samples
    assert samples[("batchops_job_tasks_failed_total", labels)] == 7  # job b's missing keys
    account = jobs[0]["JobArn"].split(":")[4]
    assert samples[("batchops_jobs", (("account", account), ("status", "Complete")))] == 2
    assert samples[("batchops_jobs", (("account", account), ("status", "Active")))] == 0


def test_each_registry_is_its_own(cli, tmp_path) -> None:
    """No global registry: two servers over two homes see their own jobs only."""
    _job(cli, tmp_path, "a", 5, 0)
    mine = _samples(metrics_body(metrics_registry(str(cli.home)))[0].decode())
    other = _samples(metrics_body(metrics_registry(str(tmp_path / "empty")))[0].decode())
    assert any(name == "batchops_job_tasks_succeeded_total" for name, _ in mine)
    assert not any(name.startswith("batchops_job_") for name, _ in other)


def test_served_metrics_match_describe_job(cli, tmp_path) -> None:
    """GET /metrics on `batchops serve`: the same numbers, over HTTP, in the Prometheus
    text format (its Content-Type), from the server's own registry."""
    import re
    import subprocess
    import sys
    import urllib.request

    job = _job(cli, tmp_path, "a", 12, 3)
    proc = subprocess.Popen([sys.executable, "-m", "batchops", "serve", "--listen",
                             "127.0.0.1:0", "--auth", "none"], env=cli.env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"listening on (http://\S+)", line)
        assert url, line
        with urllib.request.urlopen(url.group(1) + "/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            samples = _samples(r.read().decode())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    described = json.loads(cli("describe-job", "--job-id", job["JobId"], "--extended",
                               check=True).stdout)
    summary = described["Job"]["ProgressSummary"]
    labels = (("account", job["JobArn"].split(":")[4]), ("job_id", job["JobId"]),
              ("operation", "S3PutObjectCopy"))
    assert samples[("batchops_job_tasks_succeeded_total", labels)] == \
        summary["NumberOfTasksSucceeded"] == 9
    assert samples[("batchops_job_tasks_failed_total", labels)] == \
        summary["NumberOfTasksFailed"] == 3
    assert samples[("batchops_job_retries_total", labels)] == described["Batchops"]["Retries"]


def test_bytes_streamed_from_s3_are_counted(cli, s3, bucket, tmp_path) -> None:
    """A copy from an S3 bucket into a folder streams every object through batchops:
    their sizes are the job's bytes (describe-job --extended, /metrics)."""
    keys = [f"obj-{i}" for i in range(6)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=b"z" * (1000 + i))
    m = write_manifest(tmp_path / "s3.csv", [(bucket, k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'copied'}", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    extra = json.loads(cli("describe-job", "--job-id", job["JobId"], "--extended",
                           check=True).stdout)["Batchops"]
    assert extra["Bytes"] == sum(1000 + i for i in range(6))
    samples = _samples(metrics_body(metrics_registry(str(cli.home)))[0].decode())
    labels = (("account", job["JobArn"].split(":")[4]), ("job_id", job["JobId"]),
              ("operation", "S3PutObjectCopy"))
    assert samples[("batchops_job_bytes_total", labels)] == extra["Bytes"]
