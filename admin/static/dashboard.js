// The dashboard's "line now" numbers, refreshed in the background: the page is
// rendered at once from the last status the server read, and this polls
// /dashboard/line (the workers' heartbeats and the queue length, read from Redis)
// every few seconds while the page is visible.
(function () {
  "use strict";

  const POLL_MS = 5000;

  function show(id, text) {
    const element = document.getElementById(id);
    if (element) element.textContent = text;
  }

  function render(status) {
    const error = document.getElementById("line-error");
    if (error) {
      error.textContent = status.error || "";
      error.hidden = !status.error;
    }
    const known = (value) => (value === null || value === undefined ? "–" : String(value));
    show("queue-length", known(status.queue));
    show("jobs-held", known(status.unacked));
    const workers = status.workers || [];
    show("workers-online", status.error ? "–" : String(workers.length));
    show("workers-list", workers.length ? "(" + workers.join(", ") + ")" : "");
    show("workers-lost", known(status.workers_lost));
    show("jobs-restored", known(status.jobs_restored));
    const lost = (status.lost_recently || []).map(
      (l) => `${l.worker} at ${new Date(l.at * 1000).toLocaleString()}, ${l.jobs} job(s)`);
    show("lost-recently", lost.length ? "(" + lost.join("; ") + ")" : "");
  }

  function start(section) {
    const url = section.dataset.statusUrl;
    let timer = null;
    let busy = false; // one request at a time, however often the tab is shown
    let stopped = false; // the session ended: nothing more to ask until a reload

    async function poll() {
      timer = null;
      if (busy || stopped) return;
      busy = true;
      try {
        const response = await fetch(url, {
          headers: { Accept: "application/json", "X-Requested-With": "fetch" },
          credentials: "same-origin",
        });
        const body = await response.json();
        if (body && body.stale) {
          // the session has ended: stop polling until the page is loaded again
          render({ error: body.error });
          stopped = true;
          return;
        }
        render(body);
      } catch (err) {
        render({ error: "The site does not answer: " + err.message });
      } finally {
        busy = false;
      }
      schedule();
    }

    function schedule() {
      if (timer === null && !document.hidden) timer = window.setTimeout(poll, POLL_MS);
    }

    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        if (timer !== null) window.clearTimeout(timer);
        timer = null;
      } else {
        poll();
      }
    });
    poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const section = document.getElementById("line-status");
    if (section && section.dataset.statusUrl) start(section);
  });
})();
