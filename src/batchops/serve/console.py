"""The web console (`GET /`): the jobs of the server's job store, in the spirit of the S3
console's Batch Operations view.

Server-rendered HTML and a little JavaScript (static/console.js, with morphdom vendored
as one file to merge each poll's HTML into the page), no build step:

    GET  /                               the job list
    GET  /console/jobs                   the list's rows (the page polls it each second)
    GET  /console/jobs/<id>              one job: its DescribeJob fields, a throughput chart
                                         (inline SVG from the job's log), failure reasons,
                                         the report's parts
    GET  /console/jobs/<id>/panel        that page's body (polled)
    GET  /console/jobs/<id>/report/<key> a part of a report kept in a folder
    GET  /static/<file>                  console.js, morphdom.min.js, console.css, favicon.svg
    POST /console/login, /console/logout with --auth sigv4: sign in with a key

Reads are the console's own; every action (confirm, cancel, change priority) is a
request to the s3control API itself (UpdateJobStatus, UpdateJobPriority), so it passes
the server's authorisation like any client's. Who sees which account's jobs, the
sign-in and the protection against cross-site requests are serve/consoleauth.py's.
"""

from __future__ import annotations

import html
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from batchops.model.errors import BatchopsError
from batchops.model.status import RUNNING, SUSPENDED, TERMINAL
from batchops.results.stores import job_ids, job_store
from batchops.schedule.control import describe
from batchops.serve.consoleauth import LOGIN_PATH, ConsoleAuth

API = "/v20180820"
STATIC_TYPES = (("js", "text/javascript; charset=utf-8"), ("css", "text/css; charset=utf-8"),
                ("svg", "image/svg+xml"))
#: Seconds a throughput point spans at least (progress events of status changes come
#: close together, and a rate over a few milliseconds says nothing).
MIN_INTERVAL = 1.0
_JOB_PATH = re.compile(r"^/console/jobs/([0-9A-Za-z-]{1,64})(/panel|/report/(.+))?$")


@dataclass(frozen=True)
class Response:
    """What the server sends back: status, Content-Type, body, extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _html(body: str, status: int = 200) -> Response:
    return Response(status, "text/html; charset=utf-8", body.encode(),
                    (("Cache-Control", "no-store"),
                     ("Content-Security-Policy",
                      "default-src 'self'; style-src 'self'; "
                      "frame-ancestors 'none'"),
                     ("X-Content-Type-Options", "nosniff")))


def _not_found(what: str) -> Response:
    return Response(404, "text/plain; charset=utf-8", f"{what}\n".encode())


e = html.escape


def _account(job: Mapping[str, Any]) -> str:
    fields = str(job.get("JobArn", "")).split(":", 5)
    return fields[4] if len(fields) == 6 else ""


def _operation(job: Mapping[str, Any]) -> str:
    """ListJobs names the operation; DescribeJob has it as {name: parameters}."""
    op = job.get("Operation") or ""
    return op if isinstance(op, str) else next(iter(op), "")


def _rate(summary: Mapping[str, Any]) -> float:
    active = int((summary.get("Timers") or {}).get("ElapsedTimeInActiveSeconds", 0))
    done = int(summary.get("NumberOfTasksSucceeded", 0)) + int(
        summary.get("NumberOfTasksFailed", 0))
    return done / active if active else 0.0


def _progress(summary: Mapping[str, Any]) -> tuple[int, int, int, float]:
    ok = int(summary.get("NumberOfTasksSucceeded", 0))
    bad = int(summary.get("NumberOfTasksFailed", 0))
    total = int(summary.get("TotalNumberOfTasks", 0))
    return ok, bad, total, (100.0 * (ok + bad) / total if total else 0.0)


def _bar(summary: Mapping[str, Any]) -> str:
    ok, bad, total, pct = _progress(summary)
    return (f'<progress max="100" value="{pct:.1f}" title="{ok + bad:,} of {total:,} '
            f'tasks"></progress> <span class="pct">{pct:.0f}%</span>')


def _time(value: str | None) -> str:
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return e(value)
    return f'<time datetime="{e(value)}">{when:%Y-%m-%d %H:%M:%S} UTC</time>'


def _actions(job: Mapping[str, Any], account: str) -> str:
    """The buttons a job's status allows (the API refuses the others anyway)."""
    status, job_id, account = job["Status"], e(job["JobId"]), e(account)
    data = f'data-job="{job_id}" data-account="{account}"'
    out = []
    if status == SUSPENDED:
        out.append(f'<button class="act" data-act="confirm" {data}>Confirm</button>')
    if status not in TERMINAL and status not in ("Completing", "Failing", "Cancelling"):
        out.append(f'<button class="act danger" data-act="cancel" {data}>Cancel</button>')
    if status not in TERMINAL:
        out.append(f'<button class="act" data-act="priority" {data} '
                   f'data-priority="{int(job.get("Priority", 0))}">Priority…</button>')
    return " ".join(out)


def _login_form(error: str = "") -> str:
    problem = f'<p class="bad" role="alert">{e(error)}</p>' if error else ""
    return (f'{problem}<form class="login" method="post" action="{LOGIN_PATH}">'
            '<p>This server checks signatures (--auth sigv4): sign in with one of its '
            'keys. You will see the jobs of that key\'s account.</p>'
            '<label>Access key id <input name="access_key_id" autocomplete="username" '
            'required></label><label>Secret access key <input name="secret_access_key" '
            'type="password" autocomplete="current-password" required></label>'
            '<button class="primary" type="submit">Sign in</button></form>')


def page(title: str, body: str, token: str, poll: str, account: str | None = None) -> str:
    """A whole page: the console's frame around `body`; `poll` is what the script
    fetches each second to replace `#live` ("": nothing); `account`: the signed-in
    account (a sign-out button), "" for every account."""
    who = ("" if not account else
           f'<span class="account">account {e(account)}</span><form method="post" '
           f'action="/console/logout"><button class="signout">Sign out</button></form>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="batchops-csrf" content="{e(token)}">
<title>{e(title)} · batchops</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/console.css">
<script src="/static/morphdom.min.js" defer></script>
<script src="/static/console.js" defer></script>
</head><body>
<header><a class="home" href="/">batchops</a> <span class="crumb">Batch Operations</span>
<span id="status-line" role="status"></span>{who}</header>
<main><h1>{e(title)}</h1>
<div id="live" data-poll="{e(poll)}">{body}</div></main>
</body></html>"""


class Console:
    """The console's routes over one job home. `auth` (serve/consoleauth.py): who may
    see which account's jobs, and the anti-CSRF tokens (--auth none: every account)."""

    def __init__(self, home: str | None = None, auth: ConsoleAuth | None = None,
                 jobs: Callable[[], Iterable[tuple[str, dict[str, Any]]]] | None = None
                 ) -> None:
        self.home = home
        self.auth = auth or ConsoleAuth()
        # (account, JobListDescriptor or JobDescriptor) of every job, newest first: the
        # server's index when it has one, else read from the job store.
        self._jobs = jobs or self._stored_jobs

    def _stored_jobs(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for job_id in job_ids(self.home):
            try:
                job = describe(job_store(job_id, self.home))["Job"]
            except BatchopsError:
                continue
            out.append((_account(job), job))
        out.sort(key=lambda a_j: (a_j[1]["CreationTime"], a_j[1]["JobId"]), reverse=True)
        return out

    def handle(self, method: str, path: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response | None:
        """The response to a console request; None for a path that is not the console's
        (the API's, /metrics)."""
        headers = headers or {}
        path = urllib.parse.urlsplit(path).path
        if path.startswith("/static/") and method in ("GET", "HEAD"):
            return self.static(path[len("/static/"):])
        if path in (LOGIN_PATH, "/console/logout"):
            return self.sign_in(method, path, headers, body)
        if method not in ("GET", "HEAD"):
            return None
        refused = self.auth.host_refused(headers)
        if refused is not None:
            return Response(403, "text/plain; charset=utf-8", f"{refused}\n".encode())
        account = self.auth.account(headers)
        token = self.auth.token(headers)
        if account is None:  # --auth sigv4, not signed in
            if path == "/":
                return _html(page("Sign in", _login_form(), token, ""))
            match = _JOB_PATH.match(path)
            return Response(401, "text/plain; charset=utf-8", b"sign in first\n") \
                if path == "/console/jobs" or match else None
        if path == "/":
            return _html(page("Jobs", self.list_body(account), token, "/console/jobs",
                              account))
        if path == "/console/jobs":
            return _html(self.list_body(account))
        match = _JOB_PATH.match(path)
        if not match:
            return None
        job_id, rest, key = match.groups()
        try:
            store = job_store(job_id, self.home)
            if not store.exists() or account and _account(store.read()["Job"]) != account:
                return _not_found(f"no job {job_id}")
            if key is not None:
                return self.report_part(store, urllib.parse.unquote(key))
            body_html = self.detail_body(store)
        except BatchopsError as exc:
            return _not_found(str(exc))
        if rest == "/panel":
            return _html(body_html)
        return _html(page(f"Job {job_id}", body_html, token,
                          f"/console/jobs/{job_id}/panel", account))

    def sign_in(self, method: str, path: str, headers: Mapping[str, str],
                body: bytes) -> Response:
        """POST /console/login (the form's key id and secret) and /console/logout."""
        if method != "POST":
            return Response(303, "text/plain; charset=utf-8", b"", (("Location", "/"),))
        if path == "/console/logout":
            self.auth.sign_out(headers)
            return Response(303, "text/plain; charset=utf-8", b"",
                            (("Location", "/"), ("Set-Cookie", self.auth.cookie("", 0))))
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        found = self.auth.sign_in((form.get("access_key_id") or [""])[0].strip(),
                                  (form.get("secret_access_key") or [""])[0].strip()) \
            if self.auth.signing_in else None
        if found is None:
            page_html = page("Sign in", _login_form("That key id and secret are not one of "
                                                    "this server's keys."),
                             self.auth.token(headers), "")
            return _html(page_html, 401)
        return Response(303, "text/plain; charset=utf-8", b"",
                        (("Location", "/"), ("Set-Cookie", self.auth.cookie(found[0]))))

    # -- the list ---------------------------------------------------------------------------

    def list_body(self, account: str = "") -> str:
        """The job table; `account`: only that account's jobs ("": every account's)."""
        rows = []
        for owner, job in self._jobs():
            if account and owner != account:
                continue
            summary = job.get("ProgressSummary") or {}
            ok, bad, total, _ = _progress(summary)
            job_id = e(job["JobId"])
            rows.append(
                f'<tr data-job="{job_id}" data-status="{e(job["Status"])}">'
                f'<td><a href="/console/jobs/{job_id}">{job_id}</a>'
                f'<div class="desc">{e(job.get("Description") or "")}</div></td>'
                f'<td><span class="status s-{e(job["Status"].lower())}">'
                f'{e(job["Status"])}</span></td>'
                f'<td>{e(_operation(job))}</td>'
                f'<td class="num">{int(job.get("Priority", 0))}</td>'
                f'<td class="progress">{_bar(summary)}'
                f'<div class="counts">{ok + bad:,} / {total:,}</div></td>'
                f'<td class="num">{_rate(summary):,.1f}</td>'
                f'<td class="num{" bad" if bad else ""}">{bad:,}</td>'
                f'<td>{_time(job.get("CreationTime"))}</td>'
                f'<td class="actions">{_actions(job, owner)}</td></tr>')
        if not rows:
            rows.append('<tr><td colspan="9" class="empty">No jobs yet. Create one with '
                        '<code>aws s3control create-job</code> or '
                        '<code>batchops create-job</code>.</td></tr>')
        return ('<table class="jobs"><thead><tr><th>Job</th><th>Status</th><th>Operation'
                '</th><th>Priority</th><th>Progress</th><th>Tasks/s</th><th>Failed</th>'
                '<th>Created</th><th></th></tr></thead><tbody>'
                + "".join(rows) + "</tbody></table>")

    # -- one job ----------------------------------------------------------------------------

    def detail_body(self, store: Any) -> str:
        job = describe(store)["Job"]
        doc = store.read()
        summary = job.get("ProgressSummary") or {}
        ok, bad, total, _ = _progress(summary)
        timers = summary.get("Timers") or {}

        def code(value: Any) -> str:
            text = value if isinstance(value, str) else json.dumps(value)
            return f"<code>{e(text)}</code>" if value else ""

        overview = [
            ("Status", f'<span class="status s-{e(job["Status"].lower())}">'
                       f'{e(job["Status"])}</span>'),
            ("Status reason", e(job.get("StatusUpdateReason") or "")),
            ("Operation", e(_operation(job))),
            ("Priority", str(int(job.get("Priority", 0)))),
            ("Progress", f'{_bar(summary)} <span class="counts">{ok:,} succeeded, '
                         f'{bad:,} failed, {total:,} total</span>'),
            ("Tasks/s", f"{_rate(summary):,.1f}"),
            ("Active time", f'{int(timers.get("ElapsedTimeInActiveSeconds", 0)):,} s'),
            ("Description", e(job.get("Description") or "")),
            ("Created", _time(job.get("CreationTime"))),
            ("Terminated", _time(job.get("TerminationDate"))),
            ("Suspended", _time(job.get("SuspendedDate")) + (
                f' {e(job["SuspendedCause"])}' if job.get("SuspendedCause") else "")),
        ]
        configuration = [
            ("Job ARN", code(job.get("JobArn"))),
            ("Confirmation required", e(str(job.get("ConfirmationRequired", "")))),
            ("Role ARN", code(job.get("RoleArn"))),
            ("Operation parameters", code(job.get("Operation"))),
            ("Manifest", code(job.get("Manifest"))),
            ("Manifest generator", code(job.get("ManifestGenerator"))),
            ("Report", code(job.get("Report"))),
        ]

        def table(fields: list[tuple[str, str]]) -> str:
            return '<table class="fields">' + "".join(
                f"<tr><th>{name}</th><td>{value}</td></tr>"
                for name, value in fields if value.strip()) + "</table>"

        failures = "".join(
            f'<li><code>{e(f.get("FailureCode", ""))}</code> {e(f.get("FailureReason", ""))}</li>'
            for f in job.get("FailureReasons") or ())
        return (f'<div class="job" data-job="{e(job["JobId"])}" data-status="{e(job["Status"])}">'
                f'<p class="actions">{_actions(job, _account(job))}</p>{table(overview)}'
                f'<h2>Throughput</h2>{throughput_svg(progress_points(store.log_lines()))}'
                f'<h2>Failure reasons</h2>'
                f'{f"<ul class=failures>{failures}</ul>" if failures else "<p>None.</p>"}'
                f'<h2>Completion report</h2>{self.report_links(store, doc)}'
                f'<h2>Configuration</h2>{table(configuration)}</div>')

    def report_links(self, store: Any, doc: Mapping[str, Any]) -> str:
        url = (doc.get("Batchops") or {}).get("report_manifest")
        if not url:
            running = doc["Job"]["Status"] in RUNNING or doc["Job"]["Status"] == "Ready"
            return "<p>Written when the job ends.</p>" if running else "<p>No report.</p>"
        manifest = _local_report(url)
        if manifest is None:  # on an object store: named, not linked
            return f"<p><code>{e(url)}</code></p>"
        base = f"/console/jobs/{e(store.job_id)}/report/"
        items = [f'<li><a href="{base}manifest.json">manifest.json</a></li>']
        for part in manifest.get("Results") or ():
            key = str(part.get("Key", ""))
            items.append(f'<li><a href="{base}{e(urllib.parse.quote(key))}">{e(key)}</a> '
                         f'<span class="tag">{e(str(part.get("TaskExecutionStatus", "")))}'
                         "</span></li>")
        return f'<p><code>{e(url)}</code></p><ul class="parts">{"".join(items)}</ul>'

    def report_part(self, store: Any, key: str) -> Response:
        """A part (or the manifest.json) of a job's report kept in a folder; only what
        the report's manifest names is served."""
        url = (store.read().get("Batchops") or {}).get("report_manifest") or ""
        manifest = _local_report(url)
        if manifest is None:
            return _not_found("this job has no report in a folder")
        path = url[len("file://"):]
        if key != "manifest.json":
            names = {str(p.get("Key")) for p in manifest.get("Results") or ()}
            if key not in names:
                return _not_found(f"{key} is not a part of this job's report")
            # The manifest is <root>/<prefix>job-<id>/manifest.json and a part's key is
            # <prefix>job-<id>/results/<name>, from the same root.
            folder = f"job-{store.job_id}/"
            base = os.path.dirname(path)
            path = os.path.normpath(os.path.join(base, key[key.find(folder) + len(folder):]))
            if not path.startswith(base + os.sep):
                return _not_found(f"{key} is not inside this job's report")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return _not_found(f"{key} is not there any more")
        kind = "application/json" if key.endswith(".json") else "text/csv; charset=utf-8"
        return Response(200, kind, data, (("X-Content-Type-Options", "nosniff"),))

    # -- static files -----------------------------------------------------------------------

    def static(self, name: str) -> Response:
        kind = dict(STATIC_TYPES).get(name.rpartition(".")[2])
        if kind is None or "/" in name or name.startswith("."):
            return _not_found(f"no file {name}")
        try:
            data = resources.files("batchops.serve").joinpath("static").joinpath(name).read_bytes()
        except (FileNotFoundError, OSError):
            return _not_found(f"no file {name}")
        return Response(200, kind, data, (("Cache-Control", "no-cache"),))


def _local_report(url: str) -> dict[str, Any] | None:
    if not url.startswith("file://"):
        return None
    try:
        with open(url[len("file://"):], "rb") as f:
            doc: dict[str, Any] = orjson.loads(f.read())
            return doc
    except (OSError, orjson.JSONDecodeError):
        return None


# -- the throughput chart -----------------------------------------------------------------

def progress_points(lines: list[bytes]) -> list[tuple[float, int]]:
    """(seconds since the epoch, tasks done) at each `progress` event of a job's log."""
    points = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.get("event") != "progress":
            continue
        try:
            when = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        points.append((when.timestamp(),
                       int(event.get("succeeded", 0)) + int(event.get("failed", 0))))
    return points


def throughput_svg(points: list[tuple[float, int]], width: int = 640,
                   height: int = 180) -> str:
    """Tasks per second between consecutive progress events, as an inline SVG line."""
    rates = []
    if points:
        t0, d0 = points[0]
        for t1, d1 in points[1:]:
            if d1 < d0:  # counted again from nothing: a new start
                t0, d0 = t1, d1
            elif t1 - t0 >= MIN_INTERVAL:  # status changes log close together: merged
                rates.append((t1, (d1 - d0) / (t1 - t0)))
                t0, d0 = t1, d1
    if not rates:
        return '<p class="chart-empty">No throughput recorded yet (the job logs its ' \
               'progress every few seconds while it runs).</p>'
    start, end = points[0][0], rates[-1][0]
    top = max(r for _, r in rates) or 1.0
    pad_l, pad_b, pad_t = 56, 24, 10
    w, h = width - pad_l - 8, height - pad_b - pad_t
    span = max(end - start, 1e-9)

    def xy(t: float, r: float) -> str:
        return f"{pad_l + w * (t - start) / span:.1f},{pad_t + h * (1 - r / top):.1f}"

    line = " ".join([xy(start, rates[0][1])] + [xy(t, r) for t, r in rates])
    return (f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" aria-label="tasks per second over time">'
            f'<line class="axis" x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" '
            f'y2="{pad_t + h}"/><line class="axis" x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" '
            f'y2="{pad_t + h}"/>'
            f'<text x="{pad_l - 6}" y="{pad_t + 10}" text-anchor="end">{top:,.0f}</text>'
            f'<text x="{pad_l - 6}" y="{pad_t + h}" text-anchor="end">0</text>'
            f'<text x="{pad_l}" y="{height - 6}">0 s</text>'
            f'<text x="{pad_l + w}" y="{height - 6}" text-anchor="end">{span:,.0f} s</text>'
            f'<text x="{pad_l + 6}" y="{pad_t + 10}">tasks/s</text>'
            f'<polyline class="rate" points="{line}"/>'
            + "".join(f'<circle class="point" cx="{xy(t, r).split(",")[0]}" '
                      f'cy="{xy(t, r).split(",")[1]}" r="3"><title>{r:,.1f} tasks/s</title>'
                      "</circle>" for t, r in rates)
            + "</svg>")


# -- on the server (Starlette, ASGI) ----------------------------------------------------

def console_routes(console: Console) -> list[Any]:
    """The console's routes on the server (Starlette): GET /, /console/..., /static/..."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response as Reply
    from starlette.routing import Route

    async def endpoint(request: Request) -> Reply:
        body = await request.body() if request.method == "POST" else b""
        r = await run_in_threadpool(console.handle, request.method, request.url.path,
                                    dict(request.headers), body)
        if r is None:
            r = _not_found(f"no page {request.url.path}")
        reply = Reply(r.body, r.status, headers={"Content-Type": r.content_type})
        for name, value in r.headers:
            reply.headers.append(name, value)
        return reply

    methods = ["GET", "HEAD"]
    return [Route("/", endpoint, methods=methods, name="console"),
            Route(LOGIN_PATH, endpoint, methods=["GET", "POST"]),
            Route("/console/logout", endpoint, methods=["POST"]),
            Route("/console/{rest:path}", endpoint, methods=methods),
            Route("/static/{name}", endpoint, methods=methods)]


__all__ = ["API", "Console", "Response", "console_routes", "progress_points",
           "throughput_svg"]
