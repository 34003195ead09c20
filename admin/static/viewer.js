// The image viewer of the detail page (issue #29 item 2).
//
// The inspected image (and its nearest reference beside it, when it has one) fits its
// stage; the wheel (around the pointer), a two-finger pinch, the buttons and the keys
// + - 0 (fit) 1 (1:1) zoom; a drag and the arrow keys pan. A view is the zoom relative
// to fit and the image point at the stage's centre in fractions of the image, so while
// "Lock" is on both images share one view and show the same region even when their
// sizes differ. The finding boxes and the heat map lie in the zoomed layer with the
// image, in percent of it, so they follow it. Contrast and brightness filter both
// images. Admins draw a box for a new reference in draw mode (b): a drag then draws
// instead of panning. Keys are ignored while typing in a field; the review keys
// (c f r n p u q j k g x) belong to review.js.
(function () {
  "use strict";

  const MAX_PIXEL = 16; // the most screen pixels one image pixel is zoomed to
  const STEP = 1.25; // a key or button press zooms by this
  const WHEEL = Math.log(1.2) / 100; // a wheel notch (100 px) zooms by 1.2
  const PAN = 0.1; // an arrow key pans a tenth of the stage
  const FINDING_SHARE = 0.5; // "Show" zooms a finding to half the stage
  const ADJUST_KEY = "viewer-adjust"; // contrast and brightness stay for the tab's session

  const clamp = (value, low, high) => Math.max(low, Math.min(high, value));

  // A text field, a list or a slider keeps its keys; a checkbox or a button does not,
  // so that the keys work again right after the lock or a toolbar button is clicked.
  function typing(event) {
    const t = event.target;
    if (!t || !t.tagName) return false;
    if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
    return t.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(t.type);
  }

  // One image on its stage. The layer (image, heat map, boxes) is sized to the image's
  // displayed size and moved by a translation, rather than scaled by a transform, so
  // that the boxes' strokes and labels keep their size at any zoom.
  class Pane {
    constructor(stage) {
      this.stage = stage;
      this.layer = stage.querySelector(".viewer-layer");
      this.image = stage.querySelector("img.viewer-image");
      this.view = { zoom: 1, cx: 0.5, cy: 0.5 };
    }

    // Laid out only once the image's size is known and the stage is shown.
    ready() {
      return this.size() !== null && this.stage.clientWidth > 0;
    }

    size() {
      const data = this.image.dataset;
      const width = Number(data.width) || this.image.naturalWidth;
      const height = Number(data.height) || this.image.naturalHeight;
      return width > 0 && height > 0 ? [width, height] : null;
    }

    // The scale at zoom 1: as large as the stage's width and its maximum height allow.
    fit() {
      const [width, height] = this.size();
      const maxHeight = parseFloat(getComputedStyle(this.stage).maxHeight);
      return Math.min(this.stage.clientWidth / width, (maxHeight > 0 ? maxHeight : Infinity) / height);
    }

    // Zoom never goes below 1:1 nor fit, whichever is smaller, nor above MAX_PIXEL.
    limits() {
      const fit = this.fit();
      return [Math.min(1, 1 / fit), Math.max(1, MAX_PIXEL / fit)];
    }

    // Where the layer goes for `view`: the stage is as high as the image at fit; an
    // image larger than the stage covers it (the view is moved so), a smaller one is
    // centred. `view` in the result is the view so moved.
    place(view) {
      const [width, height] = this.size();
      const fit = this.fit();
      const sw = this.stage.clientWidth;
      const sh = Math.max(1, Math.round(height * fit));
      const scale = fit * view.zoom;
      const dw = width * scale;
      const dh = height * scale;
      const left = dw <= sw ? (sw - dw) / 2 : clamp(sw / 2 - view.cx * dw, sw - dw, 0);
      const top = dh <= sh ? (sh - dh) / 2 : clamp(sh / 2 - view.cy * dh, sh - dh, 0);
      const moved = { zoom: view.zoom, cx: (sw / 2 - left) / dw, cy: (sh / 2 - top) / dh };
      return { sw, sh, scale, dw, dh, left, top, view: moved };
    }

    render() {
      if (!this.ready()) return null;
      const place = this.place(this.view);
      this.stage.style.height = `${place.sh}px`;
      this.layer.style.width = `${place.dw}px`;
      this.layer.style.height = `${place.dh}px`;
      this.layer.style.transform = `translate(${place.left}px, ${place.top}px)`;
      // pixels shown as squares once enlarged; smoothed when reduced (a strip at fit)
      this.layer.classList.toggle("enlarged", place.scale > 1.01);
      this.stage.classList.toggle("pannable", place.dw > place.sw + 0.5 || place.dh > place.sh + 0.5);
      return place;
    }

    // A point of the event in stage pixels.
    point(event) {
      const box = this.stage.getBoundingClientRect();
      return [event.clientX - box.left, event.clientY - box.top];
    }
  }

  // The box form holds the box in pixels of the original image (the server checks it
  // again); a drag over the image in draw mode fills it, typing in it moves the box
  // shown. Points map through the image's bounding box, which includes the zoom and pan.
  function setupDrawing(pane, form, toggle, viewer) {
    const image = pane.image;
    const fields = ["x", "y", "width", "height"].map((name) => form.elements[name]);
    const drawn = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    drawn.setAttribute("class", "drawn");
    drawn.setAttribute("visibility", "hidden");
    pane.layer.querySelector("svg.boxes").appendChild(drawn);
    const size = () => [Number(image.dataset.width), Number(image.dataset.height)];
    const state = { on: false };

    function setMode(on) {
      state.on = on;
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      viewer.classList.toggle("drawing", on);
    }
    toggle.addEventListener("click", () => setMode(!state.on));

    function point(event) {
      const shown = image.getBoundingClientRect();
      const [width, height] = size();
      const x = Math.round(((event.clientX - shown.left) / shown.width) * width);
      const y = Math.round(((event.clientY - shown.top) / shown.height) * height);
      return [clamp(x, 0, width), clamp(y, 0, height)];
    }

    function show() {
      const [width, height] = size();
      const [x, y, w, h] = fields.map((field) => Number(field.value));
      const complete = fields.every((field) => field.value !== "") && w > 0 && h > 0;
      drawn.setAttribute("visibility", complete ? "visible" : "hidden");
      viewer.classList.toggle("has-box", complete);
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
    const stage = pane.stage;
    stage.addEventListener("pointerdown", (event) => {
      if (!state.on || event.button !== 0 || start) return;
      event.preventDefault();
      start = point(event);
      stage.setPointerCapture(event.pointerId);
      drag(event);
    });
    stage.addEventListener("pointermove", (event) => { if (state.on && start) drag(event); });
    stage.addEventListener("pointerup", (event) => {
      if (!start) return;
      drag(event);
      start = null;
      form.elements.label.focus({ preventScroll: true });
    });
    stage.addEventListener("pointercancel", () => { start = null; });
    fields.forEach((field) => field.addEventListener("input", show));
    return { active: () => state.on, toggle: () => setMode(!state.on) };
  }

  // Contrast and brightness as a CSS filter on both images (not the heat map), kept
  // in sessionStorage so that a shift of dark strips is not set again on every page.
  function setupAdjust(viewer) {
    const contrast = document.getElementById("contrast");
    const brightness = document.getElementById("brightness");
    const reset = document.getElementById("adjust-reset");
    if (!contrast || !brightness) return;
    const images = viewer.querySelectorAll("img.viewer-image");
    try {
      const kept = JSON.parse(sessionStorage.getItem(ADJUST_KEY) || "null");
      if (Array.isArray(kept)) [contrast.value, brightness.value] = kept;
    } catch (error) { /* nothing kept, or storage refused: the defaults */ }

    function apply() {
      const plain = contrast.value === contrast.defaultValue && brightness.value === brightness.defaultValue;
      const filter = plain ? "" : `contrast(${contrast.value}%) brightness(${brightness.value}%)`;
      images.forEach((image) => { image.style.filter = filter; });
      [contrast, brightness].forEach((input) => {
        const shown = document.querySelector(`output[for="${input.id}"]`);
        if (shown) shown.value = `${input.value}%`;
      });
      if (reset) reset.disabled = plain;
      try {
        sessionStorage.setItem(ADJUST_KEY, JSON.stringify([contrast.value, brightness.value]));
      } catch (error) { /* private mode: not kept */ }
    }
    [contrast, brightness].forEach((input) => input.addEventListener("input", apply));
    if (reset) {
      reset.addEventListener("click", () => {
        contrast.value = contrast.defaultValue;
        brightness.value = brightness.defaultValue;
        apply();
      });
    }
    apply();
  }

  function setupViewer(viewer) {
    const panes = Array.from(viewer.querySelectorAll(".viewer-stage"), (stage) => new Pane(stage));
    if (!panes.length) return;
    const main = panes[0];
    const lock = document.getElementById("view-lock");
    const level = document.getElementById("zoom-level");
    let active = main; // the pane keys and buttons act on while unlocked
    viewer.classList.add("viewer-live");

    function render() {
      const places = panes.map((pane) => pane.render());
      if (level && places[0]) {
        const percent = `${Math.round(100 * places[0].scale)}%`;
        level.value = Math.abs(main.view.zoom - 1) < 1e-6 ? `fit ${percent}` : percent;
      }
    }

    // Sets `pane`'s view (moved so that the image covers the stage where it can) and,
    // while locked, the other's: the same zoom and centre in fractions of each image.
    function show(pane, view) {
      if (!pane.ready()) return;
      const [low, high] = pane.limits();
      pane.view = pane.place({ ...view, zoom: clamp(view.zoom, low, high) }).view;
      if (!lock || lock.checked) {
        panes.forEach((other) => { if (other !== pane) other.view = { ...pane.view }; });
      }
      render();
    }

    // Zooms by `factor` keeping the image point at stage pixel (x, y) where it is.
    // Zooming out stops at fit (a small image below fit only by 1:1), so a wheel
    // turned down at fit scrolls the page.
    function zoomAt(pane, factor, x, y) {
      if (!pane.ready()) return;
      const place = pane.place(pane.view);
      const [px, py] = x === undefined ? [place.sw / 2, place.sh / 2] : [x, y];
      const [low, high] = pane.limits();
      const floor = factor < 1 ? Math.max(low, Math.min(1, pane.view.zoom)) : low;
      const zoom = clamp(pane.view.zoom * factor, floor, high);
      const u = (px - place.left) / place.dw;
      const v = (py - place.top) / place.dh;
      const dw = (place.dw * zoom) / pane.view.zoom;
      const dh = (place.dh * zoom) / pane.view.zoom;
      show(pane, { zoom, cx: (place.sw / 2 - (px - u * dw)) / dw, cy: (place.sh / 2 - (py - v * dh)) / dh });
    }

    function panBy(pane, dx, dy) {
      if (!pane.ready()) return;
      const place = pane.place(pane.view);
      show(pane, { zoom: pane.view.zoom, cx: pane.view.cx - dx / place.dw, cy: pane.view.cy - dy / place.dh });
    }

    const fit = () => show(active, { zoom: 1, cx: 0.5, cy: 0.5 });
    const full = () => { if (active.ready()) show(active, { ...active.view, zoom: 1 / active.fit() }); };
    const zoomIn = () => zoomAt(active, STEP);
    const zoomOut = () => zoomAt(active, 1 / STEP);

    // Zooms the main image to a finding's box (x,y,w,h in image pixels).
    function showBox(box) {
      if (!main.ready()) return;
      const [width, height] = main.size();
      const [x, y, w, h] = box;
      const place = main.place(main.view);
      const fitScale = main.fit();
      const zoom = Math.max(1, Math.min((FINDING_SHARE * place.sw) / (w * fitScale), (FINDING_SHARE * place.sh) / (h * fitScale)));
      active = main;
      show(main, { zoom, cx: (x + w / 2) / width, cy: (y + h / 2) / height });
      main.stage.scrollIntoView({ block: "nearest" });
    }

    const form = document.getElementById("box-form");
    const toggle = document.getElementById("draw-toggle");
    const drawing = form && toggle ? setupDrawing(main, form, toggle, viewer) : null;

    panes.forEach((pane) => {
      const pointers = new Map(); // pointer id -> last stage point
      const stage = pane.stage;
      stage.addEventListener("pointerdown", (event) => {
        active = pane;
        if (event.button !== 0 || !pane.ready() || (drawing && drawing.active() && pane === main)) return;
        // the page's keys go to the viewer, not to a field typed in before
        event.preventDefault();
        stage.focus({ preventScroll: true });
        stage.setPointerCapture(event.pointerId);
        pointers.set(event.pointerId, pane.point(event));
        stage.classList.add("grabbing");
      });
      stage.addEventListener("pointermove", (event) => {
        const last = pointers.get(event.pointerId);
        if (!last) return;
        const now = pane.point(event);
        pointers.set(event.pointerId, now);
        if (pointers.size === 1) {
          panBy(pane, now[0] - last[0], now[1] - last[1]);
          return;
        }
        // a pinch: zoom around the old midpoint by the change of the fingers'
        // distance, then follow the midpoint (exact when one finger moves along the line)
        const other = Array.from(pointers).find(([id]) => id !== event.pointerId)[1];
        const before = Math.hypot(last[0] - other[0], last[1] - other[1]);
        const after = Math.hypot(now[0] - other[0], now[1] - other[1]);
        if (before > 0 && after > 0) zoomAt(pane, after / before, (last[0] + other[0]) / 2, (last[1] + other[1]) / 2);
        panBy(pane, (now[0] - last[0]) / 2, (now[1] - last[1]) / 2);
      });
      const end = (event) => {
        pointers.delete(event.pointerId);
        if (!pointers.size) stage.classList.remove("grabbing");
      };
      stage.addEventListener("pointerup", end);
      stage.addEventListener("pointercancel", end);
      stage.addEventListener("wheel", (event) => {
        if (!pane.ready()) return;
        const unit = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1;
        const factor = Math.exp(-event.deltaY * unit * WHEEL);
        if (factor < 1 && pane.view.zoom <= 1 + 1e-6) return; // at fit: the page scrolls
        event.preventDefault();
        active = pane;
        zoomAt(pane, factor, ...pane.point(event));
      }, { passive: false });
      stage.addEventListener("focus", () => { active = pane; });
      pane.image.addEventListener("load", render);
    });

    const buttons = { "zoom-in": zoomIn, "zoom-out": zoomOut, "zoom-fit": fit, "zoom-full": full };
    Object.entries(buttons).forEach(([id, action]) => {
      const button = document.getElementById(id);
      if (button) button.addEventListener("click", action);
    });
    if (lock) lock.addEventListener("change", () => { if (lock.checked) show(active, active.view); });

    document.querySelectorAll("button.show-finding").forEach((button) => {
      button.addEventListener("click", () => showBox(button.dataset.box.split(",").map(Number)));
    });

    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      const place = active.ready() ? active.place(active.view) : null;
      const pannable = place && (place.dw > place.sw + 0.5 || place.dh > place.sh + 0.5);
      switch (event.key) {
        case "+": case "=": zoomIn(); break;
        case "-": case "_": zoomOut(); break;
        case "0": fit(); break;
        case "1": full(); break;
        case "b": if (!drawing) return; drawing.toggle(); break;
        // arrows pan only a zoomed image; otherwise they scroll the page
        case "ArrowLeft": if (!pannable) return; panBy(active, PAN * place.sw, 0); break;
        case "ArrowRight": if (!pannable) return; panBy(active, -PAN * place.sw, 0); break;
        case "ArrowUp": if (!pannable) return; panBy(active, 0, PAN * place.sh); break;
        case "ArrowDown": if (!pannable) return; panBy(active, 0, -PAN * place.sh); break;
        default: return;
      }
      event.preventDefault();
    });

    if (window.ResizeObserver) new ResizeObserver(render).observe(viewer);
    else window.addEventListener("resize", render);
    setupAdjust(viewer);
    render();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const viewer = document.getElementById("viewer");
    if (viewer) setupViewer(viewer);
  });
})();
