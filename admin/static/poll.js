// The one poll loop of the pages that follow the line (dashboard, live line, coil map):
// one request at a time, every `every` ms while the tab is shown, at once when it is
// shown again and none while it is hidden; it stops for good when the session has
// ended (the answer says `stale`: a reload logs in again) or `answer` returns false.
(() => {
  "use strict";

  const hidden = () => document.visibilityState === "hidden";

  window.pollJson = (url, every, { answer, failed, stale, now = true }) => {
    let timer = null;
    let busy = false;
    let stopped = false;

    async function poll() {
      timer = null;
      if (busy || stopped || hidden()) return;
      busy = true;
      try {
        const response = await fetch(url, {
          headers: { Accept: "application/json", "X-Requested-With": "fetch" },
          credentials: "same-origin",
        });
        const body = await response.json();
        if (body && body.stale) {
          stale(body.error);
          stopped = true;
          return;
        }
        if (answer(body, response) === false) {
          stopped = true;
          return;
        }
      } catch (err) {
        failed(err);
      } finally {
        busy = false;
      }
      schedule();
    }

    function schedule() {
      if (timer === null && !stopped && !hidden()) timer = window.setTimeout(poll, every);
    }

    document.addEventListener("visibilitychange", () => {
      if (hidden()) {
        if (timer !== null) window.clearTimeout(timer);
        timer = null;
      } else {
        poll(); // at once: the page has been out of date while hidden
      }
    });
    if (now) poll();
    else schedule();
  };
})();
