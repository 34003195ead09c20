// The coil map, filled live: while the coil is open, this re-reads
// /coils/<id>/marks.json every few seconds and redraws the marks, the density band,
// the axis, the counts by label and the verdict, with no reload. The server lays the
// map out (admin/coil_map.py); this only turns its geometry into SVG elements, the
// same ones the page was rendered with. Once the coil has its verdict, polling stops.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";

  function svg(name, attrs, title) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
    if (title) {
      const t = document.createElementNS(SVG, "title");
      t.textContent = title;
      element.appendChild(t);
    }
    return element;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function drawMap(map) {
    const marks = byId("coil-marks");
    marks.replaceChildren(...map.marks.map((m) => {
      const link = svg("a", { class: "mark", href: m.href, "data-inspection-id": m.inspection_id, "data-label": m.label });
      link.appendChild(svg("circle", { cx: m.x, cy: m.y, r: map.radius, fill: m.colour }, m.title));
      return link;
    }));
    byId("coil-band").replaceChildren(...map.bins.map((b) => svg("rect", {
      class: "bin", x: b.x, y: map.strip.band_top, width: b.width, height: map.strip.band_height,
      "fill-opacity": b.opacity,
    }, b.title)));
    const axis = [];
    for (const t of map.ticks) {
      axis.push(svg("line", {
        class: "tick", x1: t.x, x2: t.x, y1: map.strip.band_top + map.strip.band_height, y2: map.axis_y - 12,
      }));
      const text = svg("text", { x: t.x, y: map.axis_y, "text-anchor": t.anchor });
      text.textContent = t.text;
      axis.push(text);
    }
    byId("coil-axis").replaceChildren(...axis);
    byId("busiest").textContent = map.busiest_per_m.toFixed(2);
    byId("drawn-note").textContent = map.drawn_marks < map.total_marks
      ? `Showing the ${map.drawn_marks} highest-scoring of ${map.total_marks} marks.` : "";
    const unplaced = byId("unplaced");
    unplaced.hidden = map.unplaced.length === 0;
    byId("unplaced-list").replaceChildren(...map.unplaced.map((m) => {
      const link = document.createElement("a");
      link.className = "mark-link";
      link.href = m.href;
      link.dataset.label = m.label;
      link.textContent = `#${m.inspection_id} ${m.label}`;
      return link;
    }).flatMap((link) => [link, document.createTextNode(" ")]));
  }

  function drawCounts(counts) {
    byId("coil-counts-body").replaceChildren(...counts.map((c) => {
      const row = document.createElement("tr");
      row.dataset.label = c.label;
      const name = document.createElement("td");
      const swatch = svg("svg", { class: "swatch", viewBox: "0 0 12 12", "aria-hidden": "true" });
      swatch.appendChild(svg("circle", { cx: 6, cy: 6, r: 5, fill: c.colour }));
      name.append(swatch, " " + c.label);
      const count = document.createElement("td");
      count.className = "count";
      count.textContent = String(c.count);
      row.append(name, count);
      return row;
    }));
    byId("no-marks").hidden = counts.length > 0;
  }

  function drawVerdict(view) {
    const state = byId("verdict-state");
    state.textContent = view.state;
    state.className = "verdict-badge verdict-" + view.state;
    byId("coil-verdict").className = "coil-verdict-box box-" + view.state;
    byId("verdict-text").textContent = view.state === "open" ? view.verdict_text : "";
    byId("verdict-reasons").replaceChildren(...view.reasons.map((r) => {
      const item = document.createElement("li");
      item.textContent = r.text;
      return item;
    }));
  }

  function draw(view) {
    drawMap(view.map);
    drawCounts(view.counts);
    drawVerdict(view);
    byId("coil-frames").textContent = view.frames.toLocaleString();
    byId("coil-flagged").textContent = view.flagged.toLocaleString();
    byId("coil-length").textContent = view.length_m === null ? "length unknown" : view.length_m.toFixed(1) + " m";
    byId("live-note").textContent = view.open ? "The coil is open: the map fills as frames arrive." : "";
  }

  function start(box) {
    window.pollJson(box.dataset.marksUrl, Number(box.dataset.pollMs) || 3000, {
      answer: (body, response) => {
        if (!response.ok) return true;
        draw(body);
        box.dataset.open = body.open ? "1" : "0";
        return body.open; // an ended coil's map is final
      },
      failed: (err) => {
        byId("live-note").textContent = "The site does not answer (" + err.message + "); trying again.";
      },
      stale: (error) => {
        byId("live-note").textContent = error; // the session ended: reload to go on
      },
      now: false, // the page was drawn with the marks of now
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = byId("coil-map-box");
    if (box && box.dataset.marksUrl && box.dataset.open === "1") start(box);
  });
})();
