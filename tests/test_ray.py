"""`--engine ray` (issue 13) on real Ray: a cluster of several nodes on this machine
(`ray.cluster_utils.Cluster`), joined by the real CLI with `--ray-address`.

Each node starts with the test keys of the loopback S3 server in its environment (a
node's own AWS configuration, as on a real cluster); the jobs' settings (endpoint,
region) reach the actors from the driver. The job store is a folder every node sees
(this machine's), as the README asks of a cluster.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_plus

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from conftest import ACCESS_KEY, SECRET_KEY  # noqa: E402

NODE = {"num_cpus": 2, "object_store_memory": 80 * 1024**2}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node with no CPUs (the driver's side) and two worker nodes of 2 CPUs."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "RAY_DEDUP_LOGS")}
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    c = Cluster(initialize_head=True,
                head_node_args={"num_cpus": 0, "object_store_memory": 80 * 1024**2})
    for _ in range(2):
        c.add_node(**NODE)
    c.wait_for_nodes()
    yield c
    c.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def ray_flags(cluster: Cluster) -> list[str]:
    return ["--engine", "ray", "--ray-address", cluster.address]


def make_files(root: Path, n: int, size: int = 64) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    for i in range(n):
        (src / f"f{i:05d}").write_bytes(os.urandom(size))
    manifest = root / "manifest.csv"
    manifest.write_text("".join(f"src,f{i:05d}\n" for i in range(n)))
    return manifest


def job_dir(home: Path) -> Path:
    [d] = [p for p in (home / "jobs").iterdir() if (p / "job.json").exists()]
    return d


def report_rows(job: Path) -> list[tuple[str, ...]]:
    """Every row of the published report (read through its manifest.json)."""
    doc = json.loads((job / "job.json").read_text())
    url = doc["Batchops"]["report_manifest"]
    manifest = json.loads(Path(url[len("file://"):]).read_text())
    base = Path(url[len("file://"):]).parent.parent
    rows = []
    for part in manifest["Results"]:
        with open(base / part["Key"], newline="") as f:
            rows += [tuple(r) for r in csv.reader(f)]
    return rows


def log_events(job: Path, event: str) -> list[dict]:  # type: ignore[type-arg]
    lines = (job / "log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def markers(job: Path) -> int:
    return len(list((job / "chunks").glob("*.json")))


# -- the same job, either engine ------------------------------------------------------


def test_copy_and_noop_give_the_local_engine_s_report(cli, cluster, tmp_path) -> None:
    manifest = make_files(tmp_path, 600)
    reports = {}
    for engine, flags in (("local", ["--engine", "local"]), ("ray", ray_flags(cluster))):
        for op in ("copy", "noop"):
            cli.home = tmp_path / f"home-{engine}-{op}"
            target = tmp_path / f"dst-{engine}-{op}"
            extra = ["--target", f"file://{target}"] if op == "copy" else []
            cli("run", "--manifest", str(manifest), "--operation", op,
                "--bucket-map", f"src=file://{tmp_path / 'src'}", *extra, "--workers", "2",
                "--chunk-size", "100", "--no-progress", *flags, check=True)
            reports[engine, op] = sorted(report_rows(job_dir(cli.home)))
            if op == "copy":
                for i in range(600):
                    name = f"f{i:05d}"
                    assert (target / name).read_bytes() == (tmp_path / "src" / name).read_bytes()
    for op in ("copy", "noop"):
        assert len(reports["ray", op]) == 600
        assert reports["ray", op] == reports["local", op], op
    started = log_events(job_dir(tmp_path / "home-ray-copy"), "worker-started")
    assert len(started) == 2 and all(e["pid"] > 0 and e["node"] for e in started), started
    # SPREAD placement: the two actors went to the two worker nodes.
    assert len({e["node"] for e in started}) == 2, started


def test_tagging_over_s3_matches_the_local_engine(cli, cluster, s3, bucket, tmp_path) -> None:
    keys = [f"k/{i:04d} x+y.txt" for i in range(120)]  # URL-encoded in the manifest
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"data")
    listing = "".join(f"{bucket},{quote_plus(k, safe='/')}\n" for k in keys)
    manifest = tmp_path / "m.csv"
    manifest.write_text(listing)
    reports = {}
    for engine, flags in (("local", []), ("ray", ray_flags(cluster))):
        cli.home = tmp_path / f"home-{engine}"
        cli("run", "--manifest", str(manifest), "--operation", "put-tagging",
            "--tag", f"engine={engine}", "--workers", "2", "--chunk-size", "40",
            "--no-progress", *flags, check=True)
        reports[engine] = sorted(report_rows(job_dir(cli.home)))
        for k in keys:
            tags = s3.get_object_tagging(Bucket=bucket, Key=k)["TagSet"]
            assert tags == [{"Key": "engine", "Value": engine}], (k, tags)
    assert len(reports["ray"]) == 120 and reports["ray"] == reports["local"]


def test_chunks_sent_before_an_actor_has_its_job_all_run(cluster, tmp_path) -> None:
    """An actor handed more chunks than it has call threads before it is configured (the
    coordinator leases as soon as it can): `submit` only queues, so `configure` still
    gets a thread and every chunk runs (a `submit` that waited for `configure` held all
    four threads, and the actor hung until its lease expired)."""
    import dataclasses

    from batchops.model.spec import JobOptions
    from batchops.schedule.coordinator import JobRun
    from batchops.schedule.create import create_job
    from batchops.schedule.raybackend import RayBackend

    manifest = make_files(tmp_path, 60)
    store = create_job(JobOptions(manifest=str(manifest), operation="noop", chunk_size=10,
                                  bucket_map=(("src", f"file://{tmp_path / 'src'}"),)),
                       home=str(tmp_path / "home"))
    run = JobRun(store)
    run._check_manifest()  # the job's chunk ranges
    assert run._reader is not None and run.sched.n_chunks == 6
    cfg = dataclasses.replace(run.worker_config(1), manifest=run.info.to_json(),
                              chunk_size=run.chunk_size)
    backend = RayBackend(cluster.address)
    try:
        backend.prestart(1)
        [(_, actor)] = backend._spare
        for c in range(6):  # more than the actor's max_concurrency (4), before its job
            actor.submit.remote(run._reader.range(c))
        backend.start(cfg, 1)
        done: set[int] = set()
        deadline = time.monotonic() + 60
        while len(done) < 6 and time.monotonic() < deadline:
            done |= {e[2]["chunk"] for e in backend.wait(1.0) if e[0] == "done"}
        assert done == set(range(6))
    finally:
        backend.stop(report=False)
        ray.shutdown()


def test_a_large_ray_job_gets_larger_chunks(cli, cluster, tmp_path) -> None:
    """Each chunk costs the Ray engine actor calls a local worker does not make: a job
    created for Ray has chunks of up to 50,000 rows, as long as each actor still gets 16
    (400,000 rows on 2 actors: 12,500); the local engine keeps 10,000."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("".join(f"b,k/{i:06d}\n" for i in range(400_000)))
    sizes = {}
    for engine, flags in (("local", []), ("ray", ray_flags(cluster))):
        cli.home = tmp_path / f"home-{engine}"
        cli("run", "--manifest", str(manifest), "--operation", "noop", "--workers", "2",
            "--no-progress", *flags, check=True)
        job = job_dir(cli.home)
        sizes[engine] = json.loads((job / "job.json").read_text())["Batchops"]["chunk_size"]
        assert markers(job) == -(-400_000 // sizes[engine])
    assert sizes == {"local": 10_000, "ray": 12_500}


# -- failures in the middle of a job --------------------------------------------------


def _start_slow_copy(cli, cluster, tmp_path: Path, n: int, workers: int,  # type: ignore[no-untyped-def]
                     rate: int) -> tuple[subprocess.Popen[str], Path]:
    manifest = make_files(tmp_path, n)
    proc = cli.popen("run", "--manifest", str(manifest), "--operation", "copy",
                     "--bucket-map", f"src=file://{tmp_path / 'src'}",
                     "--target", f"file://{tmp_path / 'dst'}", "--workers", str(workers),
                     "--chunk-size", "50", "--max-ops-per-second", str(rate),
                     "--no-progress", *ray_flags(cluster),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (cli.home / "jobs").exists() and any(
        (p / "log").exists() for p in (cli.home / "jobs").iterdir()), what="the job")
    job = job_dir(cli.home)
    wait_for(lambda: len(log_events(job, "worker-started")) >= workers and markers(job) >= 2,
             what="actors at work")
    return proc, job


def _check_copied_once(tmp_path: Path, job: Path, n: int) -> None:
    doc = json.loads((job / "job.json").read_text())
    assert doc["Job"]["Status"] == "Complete", doc["Job"]
    rows = report_rows(job)
    assert len(rows) == n and len({r[1] for r in rows}) == n  # every row exactly once
    assert all(r[3] == "succeeded" for r in rows)
    for i in range(n):
        name = f"f{i:05d}"
        assert (tmp_path / "dst" / name).read_bytes() == \
            (tmp_path / "src" / name).read_bytes(), name


def test_an_actor_killed_mid_job_has_its_chunks_run_again(cli, cluster, tmp_path) -> None:
    proc, job = _start_slow_copy(cli, cluster, tmp_path, 1500, 2, 300)
    victim = log_events(job, "worker-started")[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    died = log_events(job, "worker-died")
    assert died and "Ray actor died" in died[0]["cause"], died
    _check_copied_once(tmp_path, job, 1500)


def test_a_node_lost_mid_job(cli, cluster, tmp_path) -> None:
    proc, job = _start_slow_copy(cli, cluster, tmp_path, 1500, 2, 300)
    started = log_events(job, "worker-started")
    doomed = next(n for n in cluster.worker_nodes if n.node_id == started[0]["node"])
    cluster.remove_node(doomed)
    try:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert log_events(job, "worker-died"), "no actor was lost"
        _check_copied_once(tmp_path, job, 1500)
    finally:
        cluster.add_node(**NODE)  # for the tests after this one
        cluster.wait_for_nodes()


def test_a_killed_driver_is_resumed_by_a_new_one(cli, cluster, tmp_path) -> None:
    proc, job = _start_slow_copy(cli, cluster, tmp_path, 1500, 2, 300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert markers(job) < 30  # it stopped part way
    done = cli("resume", job.name, "--no-progress", *ray_flags(cluster), timeout=180)
    assert done.returncode == 0, done.stderr
    _check_copied_once(tmp_path, job, 1500)


def test_sigterm_pauses_a_ray_job_as_a_local_one(cli, cluster, tmp_path) -> None:
    """ray.init installs a SIGTERM handler that exits at once (the job was left Active,
    after a stack dump); the driver keeps its own: the job stops Paused and resumes."""
    proc, job = _start_slow_copy(cli, cluster, tmp_path, 1500, 2, 300)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "SIGTERM received" not in err and f"batchops resume {job.name}" in err, err
    assert json.loads((job / "job.json").read_text())["Job"]["Status"] == "Paused"
    done = cli("resume", job.name, "--no-progress", *ray_flags(cluster), timeout=180)
    assert done.returncode == 0, done.stderr
    _check_copied_once(tmp_path, job, 1500)


def test_two_attempts_at_one_chunk_commit_once(cli, cluster, tmp_path, monkeypatch) -> None:
    """Chunk 1 runs on both actors at once; the attempt that gets to its commit first is
    held there until the other has committed: it loses, and only the winner's parts are
    published."""
    monkeypatch.setenv("BATCHOPS_TEST_DUPLICATE_CHUNK", "1")
    monkeypatch.setenv("BATCHOPS_TEST_HOLD_COMMIT", "1:3")
    manifest = make_files(tmp_path, 400)
    cli("run", "--manifest", str(manifest), "--operation", "copy",
        "--bucket-map", f"src=file://{tmp_path / 'src'}", "--target", f"file://{tmp_path / 'dst'}",
        "--workers", "2", "--chunk-size", "50", "--max-ops-per-second", "200",
        "--no-progress", *ray_flags(cluster), check=True)
    job = job_dir(cli.home)
    assert log_events(job, "duplicate-attempt")[0]["chunk"] == 1
    assert [e["chunk"] for e in log_events(job, "commit-lost")] == [1]
    rows = report_rows(job)
    assert len(rows) == 400 and len({r[1] for r in rows}) == 400
    marker = json.loads((job / "chunks" / f"{1:012d}.json").read_text())
    published = json.loads(Path(json.loads((job / "job.json").read_text())["Batchops"]
                                ["report_manifest"][len("file://"):]).read_text())
    chunk1 = [r["Key"].rsplit("/", 1)[1] for r in published["Results"]
              if "chunk-000000000001-" in r["Key"]]
    assert chunk1 == [p["name"] for p in marker["parts"]]  # the winner's alone
    assert sorted(p.name for p in (job / "results").glob("chunk-000000000001-*")) == chunk1


def test_rate_limit_holds_for_the_whole_cluster(cli, cluster, tmp_path) -> None:
    """Four actors on two nodes under --max-ops-per-second 400: together about 400."""
    n = 4000
    manifest = make_files(tmp_path, n, size=16)
    cli("run", "--manifest", str(manifest), "--operation", "copy",
        "--bucket-map", f"src=file://{tmp_path / 'src'}", "--target", f"file://{tmp_path / 'dst'}",
        "--workers", "4", "--max-ops-per-second", "400", "--no-progress",
        *ray_flags(cluster), check=True, timeout=240)
    job = job_dir(cli.home)
    assert len({e["node"] for e in log_events(job, "worker-started")}) == 2
    done = sorted((p.stat().st_mtime, json.loads(p.read_text())["rows"])
                  for p in (job / "chunks").glob("*.json"))
    # From the first marker to the last: the rows of every chunk but the first, over the
    # time they took (start-up and the first chunk's ramp are left out).
    rate = sum(rows for _, rows in done[1:]) / (done[-1][0] - done[0][0])
    assert 400 * 0.95 <= rate <= 400 * 1.05, rate


# -- bad input ---------------------------------------------------------------------------


def test_engine_flags_are_checked_before_anything_is_made(cli, tmp_path) -> None:
    manifest = make_files(tmp_path, 3)
    for flags, words in ((["--ray-address", "auto"], "--ray-address needs --engine ray"),
                         (["--engine", "ray", "--in-process"], "exclude each other"),
                         (["--engine", "ray", "--ray-address", "127.0.0.1:1"],
                          "cannot join --ray-address 127.0.0.1:1: nothing answers there")):
        proc = cli("run", "--manifest", str(manifest), "--operation", "noop",
                   "--bucket-map", f"src=file://{tmp_path / 'src'}", "--no-progress", *flags,
                   timeout=120)
        assert proc.returncode == 2, (flags, proc.returncode, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        jobs = cli.home / "jobs"
        assert not jobs.exists() or not list(jobs.iterdir())  # nothing was made


def test_local_engine_never_imports_ray(cli, tmp_path) -> None:
    manifest = make_files(tmp_path, 10)
    env = dict(cli.env(), PYTHONPROFILEIMPORTTIME="1")
    done = subprocess.run([sys.executable, "-m", "batchops", "run", "--manifest", str(manifest),
                           "--operation", "noop", "--bucket-map", f"src=file://{tmp_path}/src",
                           "--no-progress"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")]
    assert "batchops.schedule.coordinator" in imported  # the listing is real
    assert not [m for m in imported if m == "ray" or m.startswith("ray.")], imported


# -- shared storage on an object store; the runner ---------------------------------------


def test_a_job_store_on_s3_serves_every_node(cli, cluster, s3, bucket, tmp_path) -> None:
    """The job store on the S3 server: the actors read their chunks with ranged GETs and
    write parts and markers there; the report is published from there."""
    manifest = make_files(tmp_path, 500)
    store = f"s3://{bucket}/cluster-home"
    done = cli("run", "--manifest", str(manifest), "--operation", "copy",
               "--bucket-map", f"src=file://{tmp_path / 'src'}",
               "--target", f"file://{tmp_path / 'dst'}", "--workers", "2", "--chunk-size", "100",
               "--job-store", store, "--no-progress", "--json", *ray_flags(cluster))
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["Job"]["JobId"]
    prefix = f"cluster-home/jobs/{job_id}/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert len([k for k in keys if "/chunks/" in k]) == 5
    events = [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
              for k in sorted(k for k in keys if "/log/" in k)]
    assert len({e["node"] for e in events if e["event"] == "worker-started"}) == 2
    doc = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "job.json")["Body"].read())
    manifest_key = doc["Batchops"]["report_manifest"].split("/", 3)[3]
    report = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    rows = []
    for part in report["Results"]:
        body = s3.get_object(Bucket=bucket, Key=part["Key"])["Body"].read().decode()
        rows += list(csv.reader(body.splitlines()))
    assert sorted(r[1] for r in rows) == [f"f{i:05d}" for i in range(500)]
    assert not (cli.home / "jobs").exists()


def test_the_runner_runs_a_queue_of_jobs_on_the_cluster(cli, cluster, tmp_path) -> None:
    manifest = make_files(tmp_path, 200)
    etag = hashlib.md5(manifest.read_bytes()).hexdigest()
    ids = []
    for n in range(2):
        made = cli("create-job", "--operation", json.dumps(
            {"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path / f'dst{n}'}"}}),
            "--manifest", json.dumps({"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                               "Fields": ["Bucket", "Key"]},
                                      "Location": {"ObjectArn": f"file://{manifest}",
                                                   "ETag": etag}}),
            "--report", json.dumps({"Enabled": False}), "--priority", str(10 + n),
            "--bucket-map", f"src=file://{tmp_path / 'src'}", check=True)
        ids.append(json.loads(made.stdout)["JobId"])
    done = cli("runner", "--json", *ray_flags(cluster), timeout=180)
    assert done.returncode == 0, done.stderr
    ran = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["JobId"] for r in ran] == ids[::-1]  # the higher priority first
    assert all(r["Status"] == "Complete" for r in ran)
    for n in range(2):
        assert len(list((tmp_path / f"dst{n}").iterdir())) == 200


def test_the_progress_line_shows_actors_and_nodes(cli, cluster, tmp_path) -> None:
    manifest = make_files(tmp_path, 300)
    done = cli("run", "--manifest", str(manifest), "--operation", "copy",
               "--bucket-map", f"src=file://{tmp_path / 'src'}",
               "--target", f"file://{tmp_path / 'dst'}", "--workers", "2", "--chunk-size", "50",
               *ray_flags(cluster))
    assert done.returncode == 0, done.stderr
    final = [line for line in done.stderr.splitlines() if line.startswith("done 300/300")]
    assert final and final[-1].endswith("2 actors on 2 nodes"), done.stderr


def test_a_slowdown_slows_every_actor(cli, cluster, s3, bucket, s3_endpoint, tmp_path,
                                      monkeypatch) -> None:
    """AIMD across the cluster: only the first chunk's objects answer SlowDown (a fault
    proxy in front of the S3 server); the actor on the second chunk slows down too."""
    from faultproxy import FaultProxy

    keys = [f"a{i:04d}" for i in range(300)] + [f"b{i:04d}" for i in range(300)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("".join(f"{bucket},{k}\n" for k in keys))
    with FaultProxy(s3_endpoint) as proxy:
        for k in keys[:30]:
            proxy.script[f"/{bucket}/{k}"] = ["slowdown"]
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        done = cli("run", "--manifest", str(manifest), "--operation", "copy",
                   "--target", f"file://{tmp_path / 'out'}", "--workers", "2",
                   "--chunk-size", "300", "--concurrency", "64", "--no-progress",
                   *ray_flags(cluster))
    assert done.returncode == 0, done.stderr
    job = job_dir(cli.home)
    assert {e["chunk"] for e in log_events(job, "throttled")} == {0}
    assert log_events(job, "slowdown-shared")
    slowed = {e["chunk"]: e["concurrency"] for e in log_events(job, "slowed")}
    assert 1 in slowed and slowed[1] < 64, slowed


def test_without_an_address_ray_starts_a_local_instance(cli, tmp_path, monkeypatch) -> None:
    """`--engine ray` with no address starts a Ray instance of its own (RAY_ADDRESS=local:
    never the cluster this module started), so the same command works on a laptop."""
    monkeypatch.setenv("RAY_ADDRESS", "local")
    manifest = make_files(tmp_path, 300)
    done = cli("run", "--manifest", str(manifest), "--operation", "copy",
               "--bucket-map", f"src=file://{tmp_path / 'src'}",
               "--target", f"file://{tmp_path / 'dst'}", "--workers", "2",
               "--chunk-size", "100", "--engine", "ray", "--no-progress", timeout=180)
    assert done.returncode == 0, done.stderr
    job = job_dir(cli.home)
    assert len(log_events(job, "worker-started")) == 2
    assert len(report_rows(job)) == 300 and len(list((tmp_path / "dst").iterdir())) == 300
