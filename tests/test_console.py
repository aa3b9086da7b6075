"""The web console in a real browser: headless Chromium (Debian's chromium and
chromium-driver, which .ci/run installs) driven by Selenium, against `batchops serve`
on loopback. The page shows a running job's progress change without a reload; the
priority and cancel buttons go through the s3control API and the job ends Cancelled.
Screenshots are kept in pytest's tmp folder and copied to tests/artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import write_manifest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - a page being replaced: look again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def server(cli, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """`batchops serve --auth none` on a free loopback port; its base URL."""
    yield from _serve(cli, "--auth", "none")


KEYS = {"ops-one": ("AKIAONE0000000000001", "secret-one-" + "x" * 29, "111111111111"),
        "ops-two": ("AKIATWO0000000000002", "secret-two-" + "y" * 29, "222222222222")}


@pytest.fixture
def signed_server(cli, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """`batchops serve --keys FILE` (SigV4) with a key for each of two accounts."""
    path = tmp_path / "keys"
    path.write_text("".join(f"[{name}]\naws_access_key_id = {k}\naws_secret_access_key = "
                            f"{secret}\naws_account_id = {account}\n"
                            for name, (k, secret, account) in KEYS.items()))
    path.chmod(0o600)
    yield from _serve(cli, "--keys", str(path))


def _serve(cli, *flags: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "batchops", "serve", "--listen",
                             "127.0.0.1:0", "--runners", "1", *flags],
                            env=cli.env(), stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        line = _wait("the server to listen", lambda: next(
            (m for m in (re.search(r"listening on (http://\S+)", x) for x in lines) if m),
            None) or proc.poll() is not None and "".join(lines) + "(exited)", timeout=60)
        assert not isinstance(line, str), line
        yield line.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("the console test needs Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _slow_job(cli, tmp_path: Path, n: int = 600, account: str = "123456789012",  # type: ignore[no-untyped-def]
              name: str = "src", confirm: bool = False) -> str:
    """A job that runs for about half a minute (20 tasks/s), Ready for the server."""
    src = tmp_path / name
    src.mkdir()
    for i in range(n):
        (src / f"k{i:04d}").write_bytes(b"console")
    manifest = write_manifest(tmp_path / f"{name}.csv", [(f"file://{src}", f"k{i:04d}")
                                                   for i in range(n)])
    import hashlib

    request = {
        "Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path / name}-out"}},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                              "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": f"file://{manifest}",
                                  "ETag": hashlib.md5(manifest.read_bytes()).hexdigest()}},
        "Report": {"Enabled": False}, "Priority": 10, "ConfirmationRequired": confirm,
        "RoleArn": "arn:aws:iam::123456789012:role/batch", "Description": "console test"}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(request))
    out = cli("create-job", "--cli-input-json", f"file://{path}", "--account-id",
              account, "--max-ops-per-second", "20", "--chunk-size", "20",
              "--workers", "1", check=True).stdout
    return str(json.loads(out)["JobId"])


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def test_console_shows_progress_live_and_cancels(cli, tmp_path, server, browser) -> None:
    from selenium.webdriver.common.by import By

    job_id = _slow_job(cli, tmp_path)
    browser.get(server + "/")
    assert browser.title.startswith("Jobs")
    browser.execute_script("window.__sameDocument = true")  # gone if the page reloads
    row = f'tr[data-job="{job_id}"]'

    def done() -> int:
        text = browser.find_element(By.CSS_SELECTOR, f"{row} .counts").text
        return int(text.split("/")[0].replace(",", "").strip())

    _wait("the job to be Active", lambda: browser.find_element(
        By.CSS_SELECTOR, row).get_attribute("data-status") == "Active")
    first = _wait("tasks done", done)
    # Updates merge into the page: the buttons found now are still the page's own once
    # the counts have changed (a click while a poll lands is never lost).
    priority = browser.find_element(By.CSS_SELECTOR, f'{row} button[data-act="priority"]')
    later = _wait("the progress to move on", lambda: done() > first and done())
    assert first < later < 600
    assert browser.execute_script("return window.__sameDocument === true")
    cells = browser.find_elements(By.CSS_SELECTOR, f"{row} td")
    assert cells[1].text == "Active" and cells[2].text == "S3PutObjectCopy"
    assert browser.find_element(By.CSS_SELECTOR, f"{row} progress").get_attribute("value")
    _shot(browser, tmp_path, "console-running.png")
    # A chart worth looking at: three progress events in the log (one each 5 s).
    log = cli.home / "jobs" / job_id / "log"
    _wait("three progress events", lambda: log.read_text().count('"progress"') >= 3)

    # Priority through UpdateJobPriority (the dialog, then the API).
    priority.click()  # (stale, and raising, if a poll had replaced the row)
    field = browser.find_element(By.CSS_SELECTOR, "#action-dialog input[name=priority]")
    field.clear()
    field.send_keys("42")
    browser.find_element(By.CSS_SELECTOR, '#action-dialog button[value="yes"]').click()
    _wait("priority 42", lambda: browser.find_elements(
        By.CSS_SELECTOR, f"{row} td")[3].text == "42")

    # Cancel through UpdateJobStatus.
    browser.find_element(By.CSS_SELECTOR, f'{row} button[data-act="cancel"]').click()
    assert "Cancel job" in browser.find_element(By.CSS_SELECTOR, "#action-dialog").text
    browser.find_element(By.CSS_SELECTOR, '#action-dialog button[value="yes"]').click()
    _wait("the job to be Cancelled", lambda: browser.find_element(
        By.CSS_SELECTOR, row).get_attribute("data-status") == "Cancelled", timeout=30)
    assert browser.execute_script("return window.__sameDocument === true")
    assert "failed" not in browser.find_element(By.ID, "status-line").text
    _shot(browser, tmp_path, "console-cancelled.png")
    described = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    assert described["Status"] == "Cancelled" and described["Priority"] == 42

    # Confirm a job that waits for it (Suspended), through UpdateJobStatus: it runs.
    waiting = _slow_job(cli, tmp_path, n=40, name="waiting", confirm=True)
    other = f'tr[data-job="{waiting}"]'
    _wait("the Suspended job in the list", lambda: browser.find_element(
        By.CSS_SELECTOR, other).get_attribute("data-status") == "Suspended")
    browser.find_element(By.CSS_SELECTOR, f'{other} button[data-act="confirm"]').click()
    browser.find_element(By.CSS_SELECTOR, '#action-dialog button[value="yes"]').click()
    _wait("the confirmed job to run to Complete", lambda: browser.find_element(
        By.CSS_SELECTOR, other).get_attribute("data-status") == "Complete")
    assert browser.execute_script("return window.__sameDocument === true")
    _shot(browser, tmp_path, "console-list.png")
    assert described["StatusUpdateReason"] == "cancelled in the console"
    assert 0 < described["ProgressSummary"]["NumberOfTasksSucceeded"] < 600

    # The job's page: its DescribeJob fields and the throughput chart from its log.
    browser.find_element(By.CSS_SELECTOR, f'{row} a[href="/console/jobs/{job_id}"]').click()
    _wait("the job's page", lambda: job_id in browser.title)
    text = browser.find_element(By.ID, "live").text
    assert "Cancelled" in text and "cancelled in the console" in text
    assert "arn:aws:s3:local:123456789012:job/" + job_id in text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.rate")
    _shot(browser, tmp_path, "console-job.png")


def test_a_cross_site_request_cannot_change_a_job(cli, tmp_path, server) -> None:
    """What a page of another origin could send (no token, its own Origin) is refused;
    the console's own request with its token goes through."""
    job_id = _slow_job(cli, tmp_path, n=40)
    page = urllib.request.urlopen(server + "/").read().decode()
    token = re.search(r'name="batchops-csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    url = f"{server}/v20180820/jobs/{job_id}/priority?priority=7"

    def post(headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(url, method="POST", headers={
            "x-amz-account-id": "123456789012", **headers})
        try:
            with urllib.request.urlopen(request) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    status, body = post({"Origin": "http://evil.example"})
    assert status == 403 and "<Code>AccessDenied</Code>" in body
    status, body = post({"Origin": server, "Sec-Fetch-Site": "same-origin"})
    assert status == 403 and "X-Batchops-Csrf" in body
    status, body = post({"Origin": "http://evil.example", "X-Batchops-Csrf": token})
    assert status == 403
    # DNS rebinding: a page of evil.example, its name resolved to 127.0.0.1, is "same
    # origin" as far as the browser knows; with --auth none the server wants a loopback
    # Host, for the console's pages and for a browser's changes.
    rebound = "evil.example:" + server.rsplit(":", 1)[1]
    status, body = post({"Origin": f"http://{rebound}", "Host": rebound,
                         "X-Batchops-Csrf": token})
    assert status == 403 and "loopback" in body
    with pytest.raises(urllib.error.HTTPError) as page_refused:
        urllib.request.urlopen(urllib.request.Request(server + "/",
                                                      headers={"Host": rebound}))
    assert page_refused.value.code == 403
    status, body = post({"Origin": server, "X-Batchops-Csrf": token})
    assert status == 200 and "<Priority>7</Priority>" in body


def test_signed_server_console_signs_in_and_shows_one_account(cli, tmp_path, signed_server,
                                                               browser) -> None:
    """--auth sigv4: the console asks for a key, shows that key's account only, and its
    Cancel reaches the API as that account (the browser signs nothing)."""
    from selenium.webdriver.common.by import By

    mine = _slow_job(cli, tmp_path, account="111111111111", name="one")
    other = _slow_job(cli, tmp_path, n=40, account="222222222222", name="two")
    with pytest.raises(urllib.error.HTTPError) as refused:  # no session, no job list
        urllib.request.urlopen(signed_server + "/console/jobs")
    assert refused.value.code == 401
    browser.get(signed_server + "/")
    assert browser.title.startswith("Sign in")
    key_id, secret, _ = KEYS["ops-one"]

    def sign_in(with_secret: str) -> None:
        browser.find_element(By.NAME, "access_key_id").send_keys(key_id)
        browser.find_element(By.NAME, "secret_access_key").send_keys(with_secret)
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()

    sign_in("not-the-secret")
    _wait("a refusal", lambda: "not one of this server's keys" in browser.page_source)
    sign_in(secret)
    _wait("the job list", lambda: browser.title.startswith("Jobs"))
    assert "account 111111111111" in browser.find_element(By.TAG_NAME, "header").text
    row = f'tr[data-job="{mine}"]'
    _wait("the job to be Active", lambda: browser.find_element(
        By.CSS_SELECTOR, row).get_attribute("data-status") == "Active")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{other}"]')
    browser.find_element(By.CSS_SELECTOR, f'{row} button[data-act="cancel"]').click()
    browser.find_element(By.CSS_SELECTOR, '#action-dialog button[value="yes"]').click()
    _wait("the job to be Cancelled", lambda: browser.find_element(
        By.CSS_SELECTOR, row).get_attribute("data-status") == "Cancelled", timeout=30)
    _shot(browser, tmp_path, "console-signed-in.png")
    browser.get(f"{signed_server}/console/jobs/{other}")  # another account's job
    assert "no job" in browser.page_source
    browser.get(signed_server + "/")
    browser.find_element(By.CSS_SELECTOR, "button.signout").click()
    _wait("the sign-in form again", lambda: browser.title.startswith("Sign in"))
    # The session's account is the console's only: an unsigned API request is refused.
    request = urllib.request.Request(f"{signed_server}/v20180820/jobs/{other}/priority"
                                     "?priority=1", method="POST",
                                     headers={"x-amz-account-id": "222222222222"})
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request)
    assert unsigned.value.code == 403
