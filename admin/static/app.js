// Keyboard shortcuts for reviewing without the mouse. Keys are ignored while
// typing in a field. Queue: j/k move, o or Enter open, c confirm, f false
// alarm, x select, C confirm the selection. Detail: c, f, r (relabel), n (next).
// Detail, for admins: drag a box over the frame to make a reference of it.
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

  // The box form holds the box in pixels of the original frame (the server checks
  // it again); dragging over the frame fills it, typing in it moves the box shown.
  function setupDrawing(frame, form) {
    const image = document.getElementById("frame-image");
    const fields = ["x", "y", "width", "height"].map((name) => form.elements[name]);
    const drawn = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    drawn.setAttribute("class", "drawn");
    drawn.setAttribute("visibility", "hidden");
    document.getElementById("boxes").appendChild(drawn);
    const size = () => [Number(image.dataset.width), Number(image.dataset.height)];

    function point(event) {
      const shown = image.getBoundingClientRect();
      const [width, height] = size();
      const x = Math.round(((event.clientX - shown.left) / shown.width) * width);
      const y = Math.round(((event.clientY - shown.top) / shown.height) * height);
      return [Math.max(0, Math.min(width, x)), Math.max(0, Math.min(height, y))];
    }

    function show() {
      const [width, height] = size();
      const [x, y, w, h] = fields.map((field) => Number(field.value));
      const complete = fields.every((field) => field.value !== "") && w > 0 && h > 0;
      drawn.setAttribute("visibility", complete ? "visible" : "hidden");
      if (!complete) return;
      drawn.setAttribute("x", `${(100 * x) / width}%`);
      drawn.setAttribute("y", `${(100 * y) / height}%`);
      drawn.setAttribute("width", `${(100 * w) / width}%`);
      drawn.setAttribute("height", `${(100 * h) / height}%`);
    }

    let start = null;
    function drag(event) {
      const [x, y] = point(event);
      [fields[0].value, fields[1].value] = [Math.min(start[0], x), Math.min(start[1], y)];
      [fields[2].value, fields[3].value] = [Math.abs(x - start[0]), Math.abs(y - start[1])];
      show();
    }
    frame.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      event.preventDefault();
      start = point(event);
      frame.setPointerCapture(event.pointerId);
      drag(event);
    });
    frame.addEventListener("pointermove", (event) => { if (start) drag(event); });
    frame.addEventListener("pointerup", (event) => {
      if (!start) return;
      drag(event);
      start = null;
      form.elements.label.focus({ preventScroll: true });
    });
    frame.addEventListener("pointercancel", () => { start = null; });
    fields.forEach((field) => field.addEventListener("input", show));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("queue");
    if (table) setupQueue(table);
    const review = document.getElementById("review-form");
    if (review) setupDetail(review);
    const frame = document.getElementById("frame");
    const boxForm = document.getElementById("box-form");
    if (frame && boxForm) setupDrawing(frame, boxForm);
  });
})();
