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
    window.pollJson(section.dataset.statusUrl, POLL_MS, {
      answer: (body) => render(body),
      failed: (err) => render({ error: "The site does not answer: " + err.message }),
      stale: (error) => render({ error }), // the session has ended: nothing more until a reload
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const section = document.getElementById("line-status");
    if (section && section.dataset.statusUrl) start(section);
  });
})();
