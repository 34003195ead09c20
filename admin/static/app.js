// Keyboard shortcuts for reviewing without the mouse. Keys are ignored while
// typing in a field. Queue: j/k move, o or Enter open, c confirm, f false
// alarm, x select, C confirm the selection. Detail: c, f, r (relabel), n (next).
(function () {
  "use strict";

  function typing(event) {
    const t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function post(url, fields) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = url;
    Object.entries(Object.assign({ csrf_token: csrfToken() }, fields)).forEach(([name, value]) => {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function setupQueue(table) {
    const rows = Array.from(table.querySelectorAll("tbody tr"));
    let current = 0;
    function highlight(i) {
      if (!rows.length) return;
      current = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach((r, k) => r.classList.toggle("current", k === current));
      rows[current].scrollIntoView({ block: "nearest" });
    }
    highlight(0);
    const selectAll = document.getElementById("select-all");
    if (selectAll) {
      selectAll.addEventListener("change", () => {
        rows.forEach((r) => { r.querySelector('input[name="ids"]').checked = selectAll.checked; });
      });
    }
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      const row = rows[current];
      switch (event.key) {
        case "j": highlight(current + 1); break;
        case "k": highlight(current - 1); break;
        case "o": case "Enter": if (row) window.location = row.dataset.href; break;
        case "x": if (row) { const box = row.querySelector('input[name="ids"]'); box.checked = !box.checked; } break;
        case "c": if (row) post(row.dataset.reviewUrl, { action: "confirm", then: "queue", back: window.location.pathname + window.location.search }); break;
        case "f": if (row) post(row.dataset.reviewUrl, { action: "false_alarm", then: "queue", back: window.location.pathname + window.location.search }); break;
        case "C": document.getElementById("bulk-confirm").click(); break;
        default: return;
      }
      event.preventDefault();
    });
  }

  function setupDetail(form) {
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      switch (event.key) {
        case "c": form.requestSubmit(document.getElementById("confirm")); break;
        case "f": form.requestSubmit(document.getElementById("false-alarm")); break;
        case "r": document.getElementById("relabel-label").focus(); break;
        case "n": { const next = document.getElementById("next"); if (next) window.location = next.href; break; }
        default: return;
      }
      event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("queue");
    if (table) setupQueue(table);
    const review = document.getElementById("review-form");
    if (review) setupDetail(review);
  });
})();
