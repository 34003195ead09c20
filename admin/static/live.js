// The live line: the dashboard's live numbers, the latest findings, the alarm banner,
// the menu's "N to review" and the queue's "N new flagged — show", refreshed without
// a reload. It polls GET /live.json (admin/live.py) every 3 s while the tab is
// visible, and not at all while it is hidden: polling rather than server-sent events,
// since the site's sync gunicorn workers would each be held by one open page.
(function () {
  "use strict";

  const POLL_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    const element = byId(id);
    if (element) element.textContent = value === null || value === undefined ? "–" : String(value);
  }

  function make(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function renderAlarms(alarms) {
    const banner = byId("alarm-banner");
    if (!banner) return;
    const key = alarms.map((a) => a.text).join("\n");
    if (banner.dataset.key === key) return; // unchanged: not announced again
    banner.dataset.key = key;
    banner.replaceChildren(
      ...alarms.map((alarm) => {
        const line = make("p", "alarm", alarm.text);
        line.dataset.ruleId = String(alarm.rule_id);
        return line;
      })
    );
    banner.hidden = alarms.length === 0;
  }

  function renderMenu(toReview) {
    const count = document.querySelector("#waiting-count .count");
    if (!count || !toReview) return;
    count.textContent = toReview.text;
    count.dataset.count = String(toReview.count);
  }

  function renderTiles(body) {
    const fpm = body.frames_per_minute;
    setText("live-fpm", fpm.last_minute);
    setText("live-fpm5", fpm.last_5_minutes);
    setText("live-passed", body.last_hour.passed);
    setText("live-flagged", body.last_hour.flagged);
    setText("live-rejected", body.last_hour.rejected);
    setText("live-queue-length", body.queue_length);
    setText("live-workers", body.workers_online);
    const review = byId("live-to-review");
    if (review && body.to_review) {
      review.href = body.to_review.href;
      review.replaceChildren(make("strong", "", body.to_review.text), " to review");
    }
  }

  function renderCoil(coil) {
    const place = byId("live-coil");
    if (!place) return;
    if (!coil) {
      place.replaceChildren("no coil open");
      return;
    }
    let name;
    if (coil.href) {
      name = make("a", "", coil.id);
      name.href = coil.href;
    } else {
      name = make("strong", "", coil.id);
    }
    let facts = `: ${coil.frames} frame(s), ${coil.flagged} flagged`;
    if (coil.length_m !== null && coil.length_m !== undefined) facts += `, ${coil.length_m.toFixed(1)} m`;
    place.replaceChildren(name, facts);
  }

  function boxes(findings) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "boxes");
    for (const finding of findings) {
      if (!finding.box) continue;
      const rect = document.createElementNS(SVG, "rect");
      for (const side of ["x", "y", "width", "height"]) rect.setAttribute(side, finding.box[side] + "%");
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${finding.label} ${finding.score.toFixed(2)}`;
      rect.appendChild(title);
      svg.appendChild(rect);
    }
    return svg;
  }

  function findingItem(item) {
    const li = make("li", "live-finding");
    li.dataset.id = String(item.id);
    const link = make("a");
    link.href = item.href;
    const frame = make("span", "thumb-frame");
    if (item.thumbnail) {
      const img = make("img");
      img.src = item.thumbnail;
      img.alt = `inspection ${item.id}`;
      frame.appendChild(img);
      if (item.findings.some((f) => f.box)) frame.appendChild(boxes(item.findings));
    } else {
      frame.appendChild(make("span", "no-image", `#${item.id}`));
    }
    const time = make("time", "", item.time);
    time.dateTime = item.processed_at;
    const facts = make("span", "live-finding-facts");
    facts.append(make("span", "label", item.label || "unknown"), " ", make("span", "camera", item.camera), " ", time);
    if (item.review_state !== "pending") {
      facts.append(" ", make("span", "review-state", item.review_state.replace("_", " ")));
    }
    link.append(frame, facts);
    li.appendChild(link);
    return li;
  }

  function renderFindings(items) {
    const list = byId("live-findings");
    if (!list) return;
    // rebuilt only when what it shows changed, so the thumbnails do not flicker
    const key = items.map((i) => `${i.id}:${i.label}:${i.review_state}`).join(",");
    if (list.dataset.key !== key) {
      list.dataset.key = key;
      list.replaceChildren(...items.map(findingItem));
    }
    const none = byId("live-no-findings");
    if (none) none.hidden = items.length > 0;
  }

  function renderNewRows(notice, queue) {
    if (!queue) return;
    const text = byId("new-rows-text");
    if (text) text.textContent = `${queue.new}${queue.more ? "+" : ""} new ${notice.dataset.noun || ""}`.trim();
    notice.hidden = queue.new === 0;
  }

  function render(body, notice) {
    renderAlarms(body.alarms || []);
    renderMenu(body.to_review);
    if (byId("live")) {
      renderTiles(body);
      renderCoil(body.coil);
      renderFindings(body.latest_flagged || []);
    }
    if (notice) renderNewRows(notice, body.queue);
  }

  function showState(text, failed) {
    const state = byId("live-state");
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("error", Boolean(failed));
  }

  function pollUrl(source, notice) {
    const url = new URL(source.dataset.liveUrl, window.location.href);
    if (notice) {
      // the queue's own filter (its query string), and the newest row it was made with
      const args = new URLSearchParams(window.location.search);
      args.delete("after");
      args.forEach((value, name) => url.searchParams.append(name, value));
      url.searchParams.set("queue_after", notice.dataset.queueAfter);
    }
    return url.toString();
  }

  function start(source) {
    const notice = byId("new-rows");
    window.pollJson(pollUrl(source, notice), POLL_MS, {
      answer: (body, response) => {
        if (!response.ok) throw new Error(body.error || `status ${response.status}`);
        render(body, notice);
        window.liveLine.polls += 1;
        showState(`updated ${new Date().toLocaleTimeString()}`, false);
      },
      failed: (err) => showState("The site does not answer: " + err.message, true),
      stale: (error) => showState(error, true),
    });
  }

  // how many polls were shown (the tests watch it)
  window.liveLine = { polls: 0 };

  document.addEventListener("DOMContentLoaded", () => {
    const source = document.querySelector("[data-live-url]");
    if (source) start(source);
  });
})();
