// Reviewing in place (issue #29 item 1): the queue, its gallery and the detail page
// send reviews with fetch and show the result where they are, without a reload, so
// the reviewer keeps their place. Without this script the same forms post and the
// server redirects, as before.
//
// Keys (ignored while typing in a field):
//   queue and gallery: j/k move, o or Enter open, c confirm, f false alarm,
//     x select, C confirm the selection, F mark the selection false alarms,
//     u undo, g gallery/table, n next page, v compare the selection (gallery),
//     Escape close the comparison
//   detail: c confirm, f false alarm, r relabel, u undo, n or ] next, p or [
//     previous, q or Escape back to the queue
//
// Every review carries a request_id made here, so a review sent twice (a retry
// after the form token expired) is recorded once.
(function () {
  "use strict";

  // the last review of a detail page, shown (with Undo) on the page it moved on to
  const STASH = "review:last";

  // keys go to a field being typed in; a ticked checkbox (a click on a gallery
  // image focuses its box) still leaves them to the page
  const NOT_TYPED = ["checkbox", "radio", "button", "submit", "reset"];
  function typing(event) {
    const t = event.target;
    if (!t) return false;
    if (t.tagName === "INPUT") return !NOT_TYPED.includes(t.type);
    return t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable;
  }

  function requestId() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // a form's address: not form.action, which its buttons named "action" shadow
  function target(form) {
    return new URL(form.getAttribute("action"), window.location.href).href;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) return meta.content;
    const input = document.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }

  function setCsrfToken(token) {
    document.querySelectorAll('meta[name="csrf-token"]').forEach((meta) => { meta.content = token; });
    document.querySelectorAll('input[name="csrf_token"]').forEach((input) => { input.value = token; });
  }

  // POST the fields as a form; the answer's JSON, or an Error with the server's
  // message. An expired form token is renewed once and the request sent again
  // (its request_id makes the second one count once).
  async function send(url, fields, retried) {
    const body = new FormData();
    Object.entries(fields).forEach(([name, value]) => {
      if (Array.isArray(value)) value.forEach((v) => body.append(name, v));
      else if (value !== undefined && value !== null) body.append(name, value);
    });
    body.set("csrf_token", csrfToken());
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        credentials: "same-origin",
        keepalive: true, // a review sent just before n, o or q still arrives
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(), "X-Requested-With": "fetch" },
      });
    } catch (err) {
      throw new Error("The server could not be reached; nothing was changed. Try again.");
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (response.ok && data) return data;
    if (response.status === 400 && data && data.stale && !retried && await renewToken()) {
      return send(url, fields, true);
    }
    const message = data && data.error ? data.error
      : `The server answered ${response.status}; nothing was changed. Reload the page and try again.`;
    throw new Error(message);
  }

  async function renewToken() {
    const status = document.getElementById("review-status");
    const url = (status && status.dataset.tokenUrl) || "/csrf-token";
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return false;
      setCsrfToken((await response.json()).csrf_token);
      return true;
    } catch (err) {
      return false;
    }
  }

  // -- the status line and undo ----------------------------------------------------

  // Reviews that can be undone with u, the last on top: {text, items: [{id,
  // undoUrl, eventId, href}]} (a bulk review is one entry of several items).
  const done = [];
  let undoing = false;
  let onUndone = () => {};

  function statusLine() {
    let line = document.getElementById("review-status");
    if (!line) {
      line = document.createElement("p");
      line.id = "review-status";
      line.className = "review-status";
      line.setAttribute("role", "status");
      document.body.appendChild(line);
    }
    return line;
  }

  function say(text, withUndo, isError) {
    const line = statusLine();
    line.textContent = "";
    line.classList.toggle("error", Boolean(isError));
    const words = document.createElement("span");
    words.className = "review-status-text";
    words.textContent = text;
    line.appendChild(words);
    if (withUndo) {
      line.appendChild(document.createTextNode(" · "));
      const button = document.createElement("button");
      button.type = "button";
      button.id = "status-undo";
      button.innerHTML = "<kbd>u</kbd> Undo";
      button.addEventListener("click", undoLast);
      line.appendChild(button);
    }
    line.hidden = false;
  }

  function remember(entry) {
    done.push(entry);
    say(entry.text, true);
  }

  async function undoLast() {
    if (undoing) return;
    const entry = done[done.length - 1];
    if (!entry) {
      const fallback = document.getElementById("undo-form");
      if (fallback && !document.getElementById("undo").hidden) fallback.requestSubmit();
      else say("Nothing to undo here.", false);
      return;
    }
    undoing = true;
    try {
      const results = [];
      for (const item of entry.items) {
        const data = await send(item.undoUrl, { event_id: item.eventId, request_id: requestId() });
        results.push([item, data]);
        // undone one by one: what is undone stays undone if a later one fails
        item.eventId = null;
      }
      done.pop();
      const ids = entry.items.map((item) => `#${item.id}`).join(", ");
      say(`Undone: ${ids} ${results.length === 1 ? "is " + results[0][1].review_state_text + " again" : "are back as they were"}.`, false);
      onUndone(results);
    } catch (err) {
      entry.items = entry.items.filter((item) => item.eventId !== null);
      say(err.message, false, true);
    } finally {
      undoing = false;
    }
  }

  function restoreStash() {
    let entry = null;
    try {
      entry = JSON.parse(window.sessionStorage.getItem(STASH) || "null");
      window.sessionStorage.removeItem(STASH);
    } catch (err) {
      entry = null;
    }
    if (entry && entry.items && entry.items.length) remember(entry);
  }

  function stash(entry) {
    try { window.sessionStorage.setItem(STASH, JSON.stringify(entry)); } catch (err) { /* private mode: no toast */ }
  }

  // -- the queue and its gallery ---------------------------------------------------

  function setupQueue(list) {
    const items = Array.from(list.querySelectorAll(".review-item"));
    const byId = new Map(items.map((item) => [item.dataset.inspectionId, item]));
    const bulk = document.getElementById("bulk");
    const gallery = list.classList.contains("gallery");
    let current = 0;
    if (!items.length) return;

    function highlight(i, scroll) {
      current = Math.max(0, Math.min(items.length - 1, i));
      items.forEach((item, k) => {
        item.classList.toggle("current", k === current);
        if (k === current) item.setAttribute("aria-current", "true");
        else item.removeAttribute("aria-current");
      });
      if (scroll !== false) items[current].scrollIntoView({ block: "nearest" });
    }

    function pendingAfter(from) {
      const order = items.slice(from + 1).concat(items.slice(0, from + 1));
      const found = order.find((item) => item.dataset.state === "pending");
      return found ? items.indexOf(found) : -1;
    }

    // the row the detail page came back to, else the first one awaiting review
    const params = new URLSearchParams(window.location.search);
    const focus = params.get("focus") || (window.location.hash.match(/^#row-(\d+)$/) || [])[1];
    if (focus && byId.has(focus)) highlight(items.indexOf(byId.get(focus)));
    else highlight(Math.max(0, items.findIndex((item) => item.dataset.state === "pending")), false);

    const pick = (item) => item.querySelector('input[name="ids"]');
    const selected = () => items.filter((item) => pick(item).checked);

    function showState(item, result) {
      ["pending", "confirmed", "false_alarm", "relabeled", "saving"].forEach((s) => item.classList.remove(`state-${s}`));
      item.dataset.state = result.review_state;
      item.classList.add(`state-${result.review_state}`);
      const cell = item.querySelector(".review");
      cell.textContent = "";
      const state = document.createElement("span");
      state.className = "review-state";
      state.textContent = result.review_state_text;
      cell.appendChild(state);
      if (result.reviewed_by) {
        const by = document.createElement("small");
        by.textContent = `by ${result.reviewed_by}`;
        cell.append(" ", by);
      }
    }

    async function review(targets, action) {
      targets = targets.filter((item) => item.dataset.state !== "saving");
      if (!targets.length) return;
      const before = targets.map((item) => [item, item.dataset.state]);
      targets.forEach((item) => { item.dataset.state = "saving"; item.classList.add("state-saving"); });
      if (targets.length === 1 && targets[0] === items[current]) {
        const next = pendingAfter(current);
        if (next >= 0) highlight(next);
      }
      try {
        let results;
        if (targets.length === 1) {
          results = [await send(targets[0].dataset.reviewUrl, { action, request_id: requestId() })];
        } else {
          const ids = targets.map((item) => item.dataset.inspectionId);
          results = (await send(target(bulk), { action, ids, request_id: requestId() })).results;
        }
        results.forEach((result) => {
          const item = byId.get(String(result.inspection_id));
          if (item) showState(item, result);
        });
        targets.forEach((item) => { pick(item).checked = false; });
        updateSelection();
        const verb = results.length ? results[0].event.text : "Reviewed";
        remember({
          text: results.length === 1 ? `${verb} #${results[0].inspection_id}` : `${verb}: ${results.length} inspections`,
          items: results.map((r) => ({ id: r.inspection_id, undoUrl: byId.get(String(r.inspection_id)).dataset.undoUrl, eventId: r.event.id })),
        });
        if (pendingAfter(current) < 0 && items[current].dataset.state !== "pending") {
          say(`${verb}. Nothing on this page awaits review; n: next page.`, true);
        }
      } catch (err) {
        before.forEach(([item, state]) => { item.classList.remove("state-saving"); item.dataset.state = state; });
        say(err.message, false, true);
      }
    }

    onUndone = (results) => {
      let first = -1;
      results.forEach(([item, data]) => {
        const row = byId.get(String(item.id));
        if (!row) return;
        showState(row, data);
        if (first < 0) first = items.indexOf(row);
      });
      if (first >= 0) highlight(first);
    };

    // the selection: x or a click (in the gallery, on the image)
    const compareButton = document.getElementById("compare-selected");
    function updateSelection() {
      items.forEach((item) => item.classList.toggle("selected", pick(item).checked));
      if (compareButton) compareButton.textContent = "";
      if (compareButton) {
        compareButton.innerHTML = "<kbd>v</kbd> Compare selected";
        compareButton.append(selected().length ? ` (${selected().length})` : "");
      }
    }
    list.addEventListener("change", updateSelection);
    const selectAll = document.getElementById("select-all");
    if (selectAll) {
      selectAll.addEventListener("change", () => {
        items.forEach((item) => { pick(item).checked = selectAll.checked; });
        updateSelection();
      });
    }
    items.forEach((item, k) => item.addEventListener("click", () => highlight(k, false)));

    bulk.addEventListener("submit", (event) => {
      event.preventDefault();
      const action = event.submitter ? event.submitter.value : "confirm";
      const chosen = selected();
      if (!chosen.length) say("Select inspections first (x, or a click on the box), then confirm them.", false, true);
      else review(chosen, action);
    });

    // gallery: the selected images side by side, large
    const panel = document.getElementById("compare-panel");
    function compare() {
      if (!panel) return;
      const chosen = selected();
      if (!chosen.length) { say("Select images first (x or a click), then compare them.", false, true); return; }
      const shelf = document.getElementById("compare-images");
      shelf.textContent = "";
      chosen.forEach((item) => {
        const figure = document.createElement("figure");
        const frame = item.querySelector(".thumb-frame");
        if (frame) {
          const copy = frame.cloneNode(true);
          copy.querySelectorAll("img").forEach((img) => { img.removeAttribute("width"); img.removeAttribute("height"); img.loading = "eager"; });
          figure.appendChild(copy);
        }
        const caption = document.createElement("figcaption");
        caption.textContent = item.querySelector(".gallery-facts").textContent.replace(/\s+/g, " ").trim();
        figure.appendChild(caption);
        shelf.appendChild(figure);
      });
      panel.hidden = false;
      panel.scrollIntoView({ block: "start" });
    }
    if (compareButton) {
      compareButton.hidden = false;
      compareButton.addEventListener("click", compare);
      document.getElementById("compare-close").addEventListener("click", () => { panel.hidden = true; });
    }
    updateSelection();

    function follow(id) {
      const link = document.getElementById(id);
      if (link) window.location.assign(link.href);
    }

    window.addEventListener("keydown", (event) => {
      if (event.defaultPrevented || typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      const item = items[current];
      switch (event.key) {
        case "j": highlight(current + 1); break;
        case "k": highlight(current - 1); break;
        case "o": window.location.assign(item.dataset.href); break;
        case "Enter":
          if (event.target.closest && event.target.closest("a, button, label")) return;
          window.location.assign(item.dataset.href);
          break;
        case "x": pick(item).checked = !pick(item).checked; updateSelection(); break;
        case "c": review([item], "confirm"); break;
        case "f": review([item], "false_alarm"); break;
        case "C": bulk.requestSubmit(document.getElementById("bulk-confirm")); break;
        case "F": bulk.requestSubmit(document.getElementById("bulk-false-alarm")); break;
        case "u": undoLast(); break;
        case "g": follow("view-toggle"); break;
        case "n": follow("next-page"); break;
        case "v": if (!gallery) return; compare(); break;
        case "Escape": if (!panel || panel.hidden) return; panel.hidden = true; break;
        default: return;
      }
      event.preventDefault();
    });
  }

  // -- the detail page -------------------------------------------------------------

  function setupDetail(form) {
    const undoForm = document.getElementById("undo-form");
    const undoButton = document.getElementById("undo");
    const historyList = document.getElementById("review-history");
    const here = Number(target(form).match(/\/inspections\/(\d+)\/review/)[1]);
    const buttons = () => form.querySelectorAll("button");

    function eventItem(e) {
      const li = document.createElement("li");
      li.className = "review-event" + (e.undone ? " undone" : "");
      li.dataset.eventId = e.id;
      li.dataset.action = e.action;
      const what = document.createElement("strong");
      what.textContent = e.text;
      const when = document.createElement("time");
      when.dateTime = e.at;
      when.textContent = e.at_text;
      li.append(what, ` by ${e.reviewer} · `, when);
      if (e.comment) {
        const quote = document.createElement("blockquote");
        quote.textContent = e.comment;
        li.appendChild(quote);
      }
      return li;
    }

    function markUndone(eventId) {
      const li = historyList.querySelector(`li[data-event-id="${eventId}"]`);
      if (!li || li.classList.contains("undone")) return;
      li.classList.add("undone");
      const mark = document.createElement("em");
      mark.className = "undone-mark";
      mark.textContent = "undone";
      li.querySelector("time").after(" ", mark);
    }

    // the review panel as the server now has it
    function show(data) {
      const now = document.getElementById("review-now");
      now.querySelector(".review-state").textContent = data.review_state_text;
      now.querySelector(".review-by").textContent = data.reviewed_by ? ` by ${data.reviewed_by} at ${data.reviewed_at_text}` : "";
      const as = now.querySelector(".review-as");
      as.textContent = "";
      if (data.review_state === "relabeled" && data.review_label) {
        const label = document.createElement("strong");
        label.textContent = data.review_label;
        as.append(" as ", label);
      }
      const comment = document.getElementById("review-comment");
      comment.textContent = data.review_comment || "";
      comment.hidden = !data.review_comment;
      if (!historyList.querySelector(`li[data-event-id="${data.event.id}"]`)) {
        historyList.prepend(eventItem(data.event));
      }
      if (data.undid) markUndone(data.undid);
      document.getElementById("no-history").hidden = true;
      undoButton.hidden = !historyList.querySelector('li.review-event:not(.undone):not([data-action="undo"])');
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const action = event.submitter ? event.submitter.value : "confirm";
      const fields = {
        action,
        label: form.elements.label.value,
        comment: form.elements.comment.value,
        then: "next",
        queue: form.elements.queue.value,
        request_id: requestId(),
      };
      buttons().forEach((b) => { b.disabled = true; });
      let data;
      try {
        data = await send(target(form), fields);
      } catch (err) {
        say(err.message, false, true);
        buttons().forEach((b) => { b.disabled = false; });
        return;
      }
      show(data);
      form.elements.comment.value = "";
      const entry = {
        text: `${data.event.text} #${data.inspection_id}`,
        items: [{ id: data.inspection_id, undoUrl: target(undoForm), eventId: data.event.id, href: window.location.href }],
      };
      if (data.next_url) {
        // on to the next item awaiting review in the same queue; Undo comes along
        stash(entry);
        window.location.assign(data.next_url);
        return;
      }
      remember(entry);
      if (action !== "comment") say(`${entry.text}. Nothing else awaits review in this queue.`, true);
      buttons().forEach((b) => { b.disabled = false; });
    });

    undoForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const data = await send(target(undoForm), { queue: form.elements.queue.value, request_id: requestId() });
        show(data);
        say(`Undone: #${here} is ${data.review_state_text} again.`, false);
      } catch (err) {
        say(err.message, false, true);
      }
    });

    onUndone = (results) => {
      results.forEach(([item, data]) => {
        if (item.id === here) show(data);
        else if (item.href) window.location.assign(item.href); // back to the item undone
      });
    };

    function follow(id) {
      const link = document.getElementById(id);
      if (link) window.location.assign(link.href);
    }

    window.addEventListener("keydown", (event) => {
      if (event.defaultPrevented || typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      switch (event.key) {
        case "c": form.requestSubmit(document.getElementById("confirm")); break;
        case "f": form.requestSubmit(document.getElementById("false-alarm")); break;
        case "r": document.getElementById("relabel-label").focus(); break;
        case "u": undoLast(); break;
        case "n": case "]": follow("next"); break;
        case "p": case "[": follow("previous"); break;
        case "q": case "Escape": follow("back-to-queue"); break;
        default: return;
      }
      event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("queue");
    if (list && document.getElementById("bulk")) setupQueue(list);
    const form = document.getElementById("review-form");
    if (form) setupDetail(form);
    if (list || form) restoreStash();
  });
})();
