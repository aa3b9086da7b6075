"""`GET /metrics`: the job store's numbers in Prometheus' text format.

A custom collector reads the job store at each scrape, through the same `describe` that
DescribeJob and `batchops describe-job` use, so the counts are the ones they show. Each
server builds its own CollectorRegistry (`metrics_registry`): nothing is registered in
prometheus_client's global one.

    batchops_job_tasks_succeeded_total{account, job_id, operation}
    batchops_job_tasks_failed_total{...}
    batchops_job_tasks{...}                  TotalNumberOfTasks
    batchops_job_retries_total{...}          task attempts retried
    batchops_job_throttled_total{...}        attempts the store throttled (SlowDown, 429)
    batchops_job_tasks_per_second{...}       tasks done over ElapsedTimeInActiveSeconds
    batchops_job_bytes_total{...}            bytes copies moved through batchops (a
                                             server-side copy moves none through it)
    batchops_job_bytes_per_second{...}       those bytes over ElapsedTimeInActiveSeconds
    batchops_job_priority{...}
    batchops_job_status{..., status}         1 for the job's status now
    batchops_jobs{account, status}           jobs in each status (every status, 0 too)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchops.model.errors import BatchopsError
from batchops.model.status import STATUSES, TERMINAL
from batchops.results.stores import job_ids, job_store
from batchops.schedule.control import describe

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("account", "job_id", "operation")


def account_of(job: dict[str, Any]) -> str:
    """The account in a job's JobArn (arn:PARTITION:s3:REGION:ACCOUNT:job/ID)."""
    fields = str(job.get("JobArn", "")).split(":", 5)
    return fields[4] if len(fields) == 6 else ""


def job_rows(home: str | None = None,
             ids: Callable[[], Iterable[str]] | None = None,
             final: dict[str, dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Each job as describe-job shows it, plus its retries, throttles and bytes moved:
    {"Job": ..., "Retries": n, "Throttled": n, "Bytes": n}. Jobs that vanish or are
    unreadable are skipped. `final` keeps the rows of finished jobs (Complete, Failed,
    Cancelled never change again), so a scrape reads only the others."""
    for job_id in (ids() if ids is not None else job_ids(home)):
        if final is not None and job_id in final:
            yield final[job_id]
            continue
        store = job_store(job_id, home)
        try:
            stats = store.read()["Batchops"].get("stats") or {}
            job = describe(store)["Job"]
        except BatchopsError:
            continue
        row = {"Job": job, "Retries": int(stats.get("retries", 0)),
               "Throttled": int(stats.get("throttled", 0)),
               "Bytes": int(stats.get("bytes", 0))}
        if final is not None and job["Status"] in TERMINAL:
            final[job_id] = row
        yield row


class JobStoreCollector(Collector):
    """Collects every job of one job home at each scrape."""

    def __init__(self, home: str | None = None,
                 ids: Callable[[], Iterable[str]] | None = None) -> None:
        self.home = home
        self.ids = ids  # the server's own list of ids (its index), when it has one
        self._final: dict[str, dict[str, Any]] = {}  # rows of finished jobs

    def collect(self) -> Iterator[Metric]:
        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=LABELS)

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=(*LABELS, *extra))

        succeeded = counter("batchops_job_tasks_succeeded",
                            "Tasks succeeded (DescribeJob NumberOfTasksSucceeded)")
        failed = counter("batchops_job_tasks_failed",
                         "Tasks failed (DescribeJob NumberOfTasksFailed)")
        total = gauge("batchops_job_tasks", "Tasks in the job (TotalNumberOfTasks)")
        retries = counter("batchops_job_retries", "Task attempts retried")
        throttled = counter("batchops_job_throttled",
                            "Task attempts the store throttled (SlowDown, 429)")
        rate = gauge("batchops_job_tasks_per_second",
                     "Tasks done per second of the job's active time")
        moved = counter("batchops_job_bytes",
                        "Bytes copies moved through batchops (none for server-side copies)")
        byte_rate = gauge("batchops_job_bytes_per_second",
                          "Bytes moved per second of the job's active time")
        priority = gauge("batchops_job_priority", "The job's priority")
        status = gauge("batchops_job_status", "1 for the job's current status", ("status",))
        per_status: Counter[tuple[str, str]] = Counter()
        accounts: set[str] = set()
        seen: set[str] = set()
        for row in job_rows(self.home, self.ids, self._final):
            job = row["Job"]
            summary = job.get("ProgressSummary") or {}
            labels = [account_of(job), job["JobId"], next(iter(job["Operation"]), "")]
            ok = int(summary.get("NumberOfTasksSucceeded", 0))
            bad = int(summary.get("NumberOfTasksFailed", 0))
            active = int((summary.get("Timers") or {}).get("ElapsedTimeInActiveSeconds", 0))
            succeeded.add_metric(labels, ok)
            failed.add_metric(labels, bad)
            total.add_metric(labels, int(summary.get("TotalNumberOfTasks", 0)))
            retries.add_metric(labels, row["Retries"])
            throttled.add_metric(labels, row["Throttled"])
            rate.add_metric(labels, (ok + bad) / active if active else 0.0)
            moved.add_metric(labels, row["Bytes"])
            byte_rate.add_metric(labels, row["Bytes"] / active if active else 0.0)
            priority.add_metric(labels, int(job.get("Priority", 0)))
            status.add_metric([*labels, job["Status"]], 1)
            per_status[(labels[0], job["Status"])] += 1
            accounts.add(labels[0])
            seen.add(job["JobId"])
        for gone in set(self._final) - seen:  # deleted (delete-job, prune)
            del self._final[gone]
        jobs = GaugeMetricFamily("batchops_jobs", "Jobs in each status",
                                 labels=("account", "status"))
        for account in sorted(accounts):
            for name in STATUSES:
                jobs.add_metric([account, name], per_status[(account, name)])
        yield from (succeeded, failed, total, retries, throttled, rate, moved, byte_rate,
                    priority, status, jobs)


def metrics_registry(home: str | None = None,
                     ids: Callable[[], Iterable[str]] | None = None) -> CollectorRegistry:
    """A registry of its own (one per server) holding the job store's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobStoreCollector(home, ids))
    return registry


def metrics_body(registry: CollectorRegistry) -> tuple[bytes, str]:
    """`GET /metrics`'s body and Content-Type."""
    return generate_latest(registry), CONTENT_TYPE


def metrics_routes(registry: CollectorRegistry) -> list[Any]:
    """The server's `GET /metrics` route (Starlette)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        body, kind = await run_in_threadpool(metrics_body, registry)
        return Response(body, 200, headers={"Content-Type": kind})

    return [Route("/metrics", endpoint, methods=["GET", "HEAD"], name="metrics")]


__all__ = ["CONTENT_TYPE", "JobStoreCollector", "account_of", "job_rows", "metrics_body",
           "metrics_registry", "metrics_routes"]
