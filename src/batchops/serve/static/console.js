// batchops console: live updates by polling, and job actions through the s3control API
// (UpdateJobStatus, UpdateJobPriority) with the console's anti-CSRF header. No framework:
// each poll's HTML is merged into the page by morphdom (vendored, morphdom.min.js), which
// changes only the nodes that differ, so a button being pressed or hovered is never
// replaced under the pointer.
"use strict";

(function () {
  const token = document.querySelector('meta[name="batchops-csrf"]').content;
  const live = document.getElementById("live");
  const line = document.getElementById("status-line");
  const POLL_MS = 1000;

  function say(text, bad) {
    line.textContent = text;
    line.className = bad ? "bad" : "";
  }

  async function refresh() {
    try {
      const r = await fetch(live.dataset.poll, {
        headers: { "X-Batchops-Csrf": token }, cache: "no-store",
      });
      if (r.ok) {
        const html = await r.text();
        if (html !== live.dataset.last) {
          morphdom(live, `<div>${html}</div>`, { childrenOnly: true });
          live.dataset.last = html;
        }
        if (line.classList.contains("offline")) say("", false);
      } else if (r.status === 401) {
        say("Signed out: reload the page to sign in again", true);
      } else {
        say(`Cannot refresh: HTTP ${r.status}`, true);
      }
    } catch (err) {
      say("The server does not answer; retrying", true);
      line.classList.add("offline");
    }
  }

  // An S3 error body: <Error><Code>..</Code><Message>..</Message></Error>
  function apiError(status, text) {
    const xml = new DOMParser().parseFromString(text, "application/xml");
    const code = xml.querySelector("Code");
    const message = xml.querySelector("Message");
    return code ? `${code.textContent}: ${message ? message.textContent : ""}` :
      `HTTP ${status}`;
  }

  async function api(job, account, what, query) {
    const url = `/v20180820/jobs/${encodeURIComponent(job)}/${what}?` +
      new URLSearchParams(query).toString();
    const r = await fetch(url, {
      method: "POST",
      headers: { "x-amz-account-id": account, "X-Batchops-Csrf": token },
    });
    const text = await r.text();
    if (!r.ok) throw new Error(apiError(r.status, text));
    return text;
  }

  // One dialog for every action (outside #live, so polling never replaces it).
  const dialog = document.createElement("dialog");
  dialog.id = "action-dialog";
  dialog.innerHTML = '<form method="dialog"><p class="question"></p>' +
    '<p class="priority-field"><label>Priority <input name="priority" type="number" ' +
    'min="0" max="2147483647" required></label></p>' +
    '<menu><button value="no" formnovalidate>Back</button> ' +
    '<button value="yes" class="primary">OK</button></menu></form>';
  document.body.appendChild(dialog);

  function ask(question, priority) {
    dialog.querySelector(".question").textContent = question;
    const field = dialog.querySelector(".priority-field");
    const input = dialog.querySelector("input");
    field.hidden = priority === undefined;
    input.disabled = priority === undefined;
    if (priority !== undefined) input.value = priority;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "yes" ? (priority === undefined ? true : input.value)
          : null);
      }, { once: true });
    });
  }

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.act");
    if (!button) return;
    const { job, account, act } = button.dataset;
    try {
      if (act === "cancel") {
        if (!await ask(`Cancel job ${job}? Tasks that ran stay done; its report covers them.`))
          return;
        await api(job, account, "status", {
          requestedJobStatus: "Cancelled", statusUpdateReason: "cancelled in the console",
        });
        say(`Cancellation of ${job} requested`, false);
      } else if (act === "confirm") {
        if (!await ask(`Run job ${job}?`)) return;
        await api(job, account, "status", {
          requestedJobStatus: "Ready", statusUpdateReason: "confirmed in the console",
        });
        say(`Job ${job} confirmed`, false);
      } else if (act === "priority") {
        const value = await ask(`New priority of job ${job}`, button.dataset.priority);
        if (value === null) return;
        await api(job, account, "priority", { priority: value });
        say(`Priority of ${job} is now ${value}`, false);
      }
    } catch (err) {
      say(`${act} failed: ${err.message}`, true);
    }
    refresh();
  });

  if (live.dataset.poll) setInterval(refresh, POLL_MS);
})();
