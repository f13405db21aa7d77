// The labeling canvas shared by Refine and Auto-label (docs/canvas.md).
// The page holds, per canvas NAME: a host <div class="agl-canvas-host" data-canvas=NAME> (a gr.HTML),
// a hidden textbox #NAME-canvas-data (the server's view as JSON) and a hidden button
// #NAME-canvas-send whose click event runs js="() => [aglCanvas.take(NAME), ...]" and then the
// Python handler with the events. Coordinates sent are absolute image pixels, (x, y), x = column.
(function () {
  if (window.aglCanvas) return;
  const C = { inst: {}, latencies: {} };
  window.aglCanvas = C;
  const HIT = 9;          // vertex / edge hit distance in screen px
  const DRAG = 4;         // a press that moves more than this is a drag (box), not a click

  function typing(t) {
    const tag = (t && t.tagName || "").toLowerCase();
    if (tag === "input") return !["radio", "checkbox", "button", "submit"].includes((t.type || "").toLowerCase());
    return tag === "textarea" || tag === "select" || (t && t.isContentEditable);
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  class Canvas {
    constructor(name) {
      this.name = name; this.data = null; this.raw = ""; this.img = null; this.imgKey = null;
      this.images = {}; this.view = { s: 1, tx: 0, ty: 0 }; this.mode = "prompt"; this.size = 12;
      this.queue = []; this.batch = null; this.drag = null; this.space = false; this.masks = {};
      this.pendingClass = null; this.fitted = null;
    }

    mount(host) {
      this.host = host; host.innerHTML = ""; host.dataset.mounted = "1";
      const n = this.name, bar = el("div", "agl-cv-bar");
      const btn = (id, label, title, fn) => {
        const b = el("button", "agl-cv-btn", label); b.id = `${n}-cv-${id}`; b.title = title; b.type = "button";
        b.addEventListener("click", (ev) => { ev.preventDefault(); fn(); }); bar.appendChild(b); return b;
      };
      this.modeBtns = {
        prompt: btn("mode-prompt", "✚ Click / box", "click = add, right-click or Shift+click = remove, drag = box (V)", () => this.pickMode("prompt")),
        brush: btn("mode-brush", "✎ Brush", "paint the selected mask (B)", () => this.pickMode("brush")),
        eraser: btn("mode-eraser", "⌫ Eraser", "erase from the selected mask (E)", () => this.pickMode("eraser")),
        polygon: btn("mode-polygon", "⬠ Polygon", "drag vertices, double-click an edge to add one, Alt/right-click a vertex to remove it (P)", () => this.pickMode("polygon")),
      };
      const size = el("input"); size.type = "range"; size.min = "2"; size.max = "80"; size.value = String(this.size);
      size.id = `${n}-cv-size`; size.title = "brush / eraser radius (image px)";
      size.addEventListener("input", () => { this.size = +size.value; this.sizeLabel.textContent = `${this.size}px`; });
      this.sizeLabel = el("span", "agl-cv-size", `${this.size}px`);
      bar.appendChild(size); bar.appendChild(this.sizeLabel);
      btn("zoom-out", "−", "zoom out (−)", () => this.zoomBy(1 / 1.25));
      btn("zoom-in", "+", "zoom in (+)", () => this.zoomBy(1.25));
      btn("fit", "Fit", "fit to window (F or 0)", () => this.fit());
      btn("undo", "↶", "undo (Ctrl+Z)", () => this.send({ type: "undo" }));
      btn("redo", "↷", "redo (Ctrl+Shift+Z)", () => this.send({ type: "redo" }));
      btn("prev", "◀", "previous image (← / PageUp)", () => this.send({ type: "nav", delta: -1 }));
      this.pos = el("span", "agl-cv-pos", ""); this.pos.id = `${n}-cv-pos`; bar.appendChild(this.pos);
      btn("next", "▶", "next image (→ / PageDown)", () => this.send({ type: "nav", delta: 1 }));
      this.stage = el("div", "agl-cv-stage"); this.stage.id = `${n}-cv-stage`;
      this.cv = el("canvas"); this.cv.id = `${n}-cv`; this.cv.tabIndex = 0; this.stage.appendChild(this.cv);
      this.legend = el("div", "agl-cv-legend"); this.legend.id = `${n}-cv-legend`;
      this.hint = el("div", "agl-cv-hint", ""); this.hint.id = `${n}-cv-hint`;
      host.append(bar, this.stage, this.legend, this.hint);
      this.g = this.cv.getContext("2d");
      new ResizeObserver(() => this.resize()).observe(this.stage);
      this.wire(); this.setMode(this.mode); this.resize();
      if (this.data) this.render();
    }

    pickMode(m) {  // the user picks a tool: that cancels a Refine Delete waiting for its confirmation
      if (this.data && this.data.confirm_delete) { this.data.confirm_delete = null; this.send({ type: "cancel" }); }
      this.setMode(m);
    }
    setMode(m) {
      this.mode = m;
      for (const [k, b] of Object.entries(this.modeBtns)) b.classList.toggle("agl-on", k === m);
      this.cv.style.cursor = m === "prompt" ? "crosshair" : m === "polygon" ? "default" : "none";
      this.draw();
    }

    resize() {
      const r = this.stage.getBoundingClientRect(), d = window.devicePixelRatio || 1;
      if (!r.width || !r.height) return;
      this.cv.width = Math.round(r.width * d); this.cv.height = Math.round(r.height * d);
      this.cv.style.width = r.width + "px"; this.cv.style.height = r.height + "px";
      if (this.fitted !== this.imgKey) this.fit(); else this.draw();
    }

    fit() {
      const d = this.data; if (!d || !d.width || !this.cv.width) { this.draw(); return; }
      const w = this.cv.clientWidth, h = this.cv.clientHeight, s = Math.min(w / d.width, h / d.height);
      this.view = { s, tx: (w - d.width * s) / 2, ty: (h - d.height * s) / 2 };
      this.fitted = this.imgKey; this.draw();
    }

    zoomBy(f, cx, cy) {
      const v = this.view;
      if (cx === undefined) { cx = this.cv.clientWidth / 2; cy = this.cv.clientHeight / 2; }
      const s = Math.min(64, Math.max(0.05, v.s * f)), k = s / v.s;
      this.view = { s, tx: cx - (cx - v.tx) * k, ty: cy - (cy - v.ty) * k }; this.draw();
    }

    toImage(ev) {
      const r = this.cv.getBoundingClientRect(), v = this.view;
      return [(ev.clientX - r.left - v.tx) / v.s, (ev.clientY - r.top - v.ty) / v.s];
    }
    toScreen(x, y) { const v = this.view; return [x * v.s + v.tx, y * v.s + v.ty]; }
    clientPoint(x, y) {  // page coordinates of image pixel (x, y): for tests and tools
      const r = this.cv.getBoundingClientRect(), [sx, sy] = this.toScreen(x, y);
      return [r.left + sx, r.top + sy];
    }
    selectedObject() {
      const d = this.data; if (!d || d.selected === null || d.selected === undefined) return null;
      return d.objects.find((o) => o.index === d.selected) || null;
    }

    vertexAt(ev) {
      const o = this.selectedObject(); if (!o || !o.polygons) return null;
      const r = this.cv.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
      for (let ri = 0; ri < o.polygons.length; ri++) {
        const ring = o.polygons[ri];
        for (let vi = 0; vi < ring.length; vi++) {
          const [sx, sy] = this.toScreen(ring[vi][0], ring[vi][1]);
          if (Math.hypot(sx - px, sy - py) <= HIT) return { ring: ri, vertex: vi };
        }
      }
      return null;
    }
    edgeAt(ev) {
      const o = this.selectedObject(); if (!o || !o.polygons) return null;
      const r = this.cv.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
      let best = null;
      o.polygons.forEach((ring, ri) => ring.forEach((a, vi) => {
        const b = ring[(vi + 1) % ring.length], [ax, ay] = this.toScreen(a[0], a[1]), [bx, by] = this.toScreen(b[0], b[1]);
        const L = (bx - ax) ** 2 + (by - ay) ** 2 || 1, t = Math.max(0, Math.min(1, ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / L));
        const dist = Math.hypot(ax + t * (bx - ax) - px, ay + t * (by - ay) - py);
        if (dist <= HIT && (!best || dist < best.dist)) best = { ring: ri, after: vi, dist, t, a, b };
      }));
      return best;
    }
    sendPolygon(ri, ring, t0) {
      const o = this.selectedObject();
      this.send({ type: "polygon", index: o.index, ring: ri, old: o.polygons[ri], points: ring.map((p) => [Math.round(p[0]), Math.round(p[1])]) }, t0);
    }

    wire() {
      const cv = this.cv;
      cv.addEventListener("contextmenu", (ev) => ev.preventDefault());
      cv.addEventListener("wheel", (ev) => {
        ev.preventDefault();
        const r = cv.getBoundingClientRect();
        this.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
      }, { passive: false });
      cv.addEventListener("mousedown", (ev) => {
        ev.preventDefault(); cv.focus({ preventScroll: true });
        const t0 = performance.now(), [x, y] = this.toImage(ev);
        if (ev.button === 1 || this.space) { this.drag = { kind: "pan", cx: ev.clientX, cy: ev.clientY, v: { ...this.view } }; return; }
        if (!this.data || !this.data.width) return;
        if (this.mode === "polygon") {
          const hit = this.vertexAt(ev);
          if (hit) {
            const ring = this.selectedObject().polygons[hit.ring].map((p) => p.slice());
            if (ev.button === 2 || ev.altKey) {
              if (ring.length > 3) { ring.splice(hit.vertex, 1); this.sendPolygon(hit.ring, ring, t0); }
              return;
            }
            this.drag = { kind: "vertex", ...hit, ringPts: ring, t0 }; return;
          }
          if (this.edgeAt(ev)) return;  // near an edge: a double-click adds a vertex
        }
        if ((this.mode === "brush" || this.mode === "eraser") && ev.button === 0 && !ev.shiftKey) {
          this.drag = { kind: "stroke", pts: [[x, y]], t0 }; this.draw(); return;
        }
        this.drag = { kind: "prompt", x0: x, y0: y, x1: x, y1: y, cx: ev.clientX, cy: ev.clientY, moved: false,
          neg: ev.button === 2 || ev.shiftKey, t0 };
      });
      window.addEventListener("mousemove", (ev) => {
        const d = this.drag; if (!d) { if (this.mode === "brush" || this.mode === "eraser") { this.cursor = this.toImage(ev); this.draw(); } return; }
        const [x, y] = this.toImage(ev);
        if (d.kind === "pan") { this.view = { s: d.v.s, tx: d.v.tx + ev.clientX - d.cx, ty: d.v.ty + ev.clientY - d.cy }; }
        else if (d.kind === "stroke") { d.pts.push([x, y]); this.cursor = [x, y]; }
        else if (d.kind === "vertex") { d.ringPts[d.vertex] = [x, y]; }
        else if (d.kind === "prompt") { d.x1 = x; d.y1 = y; d.moved = d.moved || Math.hypot(ev.clientX - d.cx, ev.clientY - d.cy) > DRAG; }
        this.draw();
      });
      window.addEventListener("mouseup", () => {
        const d = this.drag; if (!d) return; this.drag = null;
        if (d.kind === "stroke") {
          const pts = d.pts.filter((p, i) => i === 0 || Math.hypot(p[0] - d.pts[i - 1][0], p[1] - d.pts[i - 1][1]) >= 1);
          this.send({ type: this.mode === "eraser" ? "erase" : "brush", index: this.data.selected, radius: this.size,
            points: pts.map((p) => [Math.round(p[0] * 10) / 10, Math.round(p[1] * 10) / 10]) }, performance.now(), { stroke: pts, erase: this.mode === "eraser" });
        } else if (d.kind === "vertex") {  // strokes and vertex drags: latency from the mouseup
          this.sendPolygon(d.ring, d.ringPts, performance.now());
        } else if (d.kind === "prompt") {
          if (d.moved && !d.neg) this.send({ type: "box", box: [d.x0, d.y0, d.x1, d.y1].map((v) => Math.round(v)) }, d.t0, { box: [d.x0, d.y0, d.x1, d.y1] });
          else if (!d.moved && this.inside(d.x0, d.y0)) this.send({ type: "point", x: Math.round(d.x0 * 10) / 10, y: Math.round(d.y0 * 10) / 10, label: d.neg ? 0 : 1 }, d.t0, { point: [d.x0, d.y0, d.neg ? 0 : 1] });
        }
        this.draw();
      });
      cv.addEventListener("dblclick", (ev) => {
        if (this.mode !== "polygon") return;
        const e = this.edgeAt(ev); if (!e || this.vertexAt(ev)) return;
        // A vertex on an edge does not change the mask: it stays on the page (the outline the
        // server sends next is derived from the mask again) until it is dragged.
        const o = this.selectedObject();
        o.polygons[e.ring].splice(e.after + 1, 0, [e.a[0] + e.t * (e.b[0] - e.a[0]), e.a[1] + e.t * (e.b[1] - e.a[1])]);
        this.draw();
      });
      cv.addEventListener("mouseenter", () => { this.hover = true; });
      cv.addEventListener("mouseleave", () => { this.hover = false; this.cursor = null; this.draw(); });
    }

    inside(x, y) { return this.data && x >= 0 && y >= 0 && x <= this.data.width && y <= this.data.height; }

    key(ev, down) {
      if (!this.cv || this.cv.offsetParent === null || !this.data || !this.data.width) return false;  // tab not shown / nothing open
      if (typing(ev.target)) return false;
      const k = ev.key, lower = (k || "").toLowerCase(), ctrl = ev.ctrlKey || ev.metaKey;
      if (k === " ") {  // pan while held: only over the canvas (Space still presses a focused button elsewhere)
        if (down && !this.hover && document.activeElement !== this.cv) return false;
        if (!down && !this.space) return false;
        this.space = down; this.cv.style.cursor = down ? "grab" : ""; if (!down) this.setMode(this.mode); return true;
      }
      if (!down) return false;
      if (ctrl && lower === "z") { this.send({ type: ev.shiftKey ? "redo" : "undo" }); return true; }
      if (ctrl && lower === "y") { this.send({ type: "redo" }); return true; }
      if (ctrl || ev.altKey) return false;
      if (k === "Delete" || k === "Backspace") {  // Refine: asks first (a second Delete deletes); Shift = clear the mask
        this.send(ev.shiftKey ? { type: "delete", index: this.data.selected, clear: true } : { type: "delete", index: this.data.selected });
        return true;
      }
      if (/^[1-9]$/.test(k)) {
        const i = +k - 1; if (i >= (this.data.classes || []).length) return true;
        this.pendingClass = this.data.classes[i].name; this.renderLegend();
        this.send({ type: "class", index: i }); return true;
      }
      if (k === "ArrowLeft" || k === "PageUp") { this.send({ type: "nav", delta: -1 }); return true; }
      if (k === "ArrowRight" || k === "PageDown") { this.send({ type: "nav", delta: 1 }); return true; }
      if (k === "+" || k === "=") { this.zoomBy(1.25); return true; }
      if (k === "-" || k === "_") { this.zoomBy(1 / 1.25); return true; }
      if (lower === "f" || k === "0") { this.fit(); return true; }
      const modes = { v: "prompt", b: "brush", e: "eraser", p: "polygon" };
      if (modes[lower]) { this.pickMode(modes[lower]); return true; }
      if (k === "Escape") {
        this.drag = null; this.pickMode("prompt"); return true;
      }
      return false;
    }

    // --- talking to the server ---------------------------------------------------------
    send(ev, t0, preview) {
      ev.t0 = t0 || performance.now(); ev.preview = preview || null;
      this.queue.push(ev); this.draw(); this.flush();
    }
    flush() {
      if (this.batch || !this.queue.length) return;
      const btn = document.querySelector(`#${this.name}-canvas-send`);
      if (!btn) return;
      this.batch = { events: this.queue, seq: this.data ? this.data.seq : 0, t0: this.queue[0].t0, at: performance.now() };
      C.sentAt = this.batch.at;
      this.queue = [];
      (btn.tagName === "BUTTON" ? btn : btn.querySelector("button") || btn).click();
      const b = this.batch;
      setTimeout(() => { if (this.batch === b) this.release(); }, 120000);  // a lost answer never blocks the canvas
    }
    take() {  // called by the send button's js=: the events of the batch in flight, as JSON
      const b = this.batch; if (!b) return "[]";
      return JSON.stringify(b.events.map(({ t0, preview, ...e }) => e));
    }
    done() {  // the send event finished; an error answers no view: drop the previews then
      const b = this.batch;
      setTimeout(() => { if (this.batch === b && b) this.release(); }, 400);
    }
    release() { this.batch = null; this.draw(); this.flush(); }

    receive(raw) {
      if (!raw || raw === this.raw) return;
      this.raw = raw; C.receivedAt = performance.now();
      let d; try { d = JSON.parse(raw); } catch (e) { return; }
      if (this.data && d.seq <= this.data.seq) return;
      this.data = d; this.masks = {}; this.pendingClass = null;
      const b = this.batch, answered = b && d.seq > b.seq;
      const show = () => {
        if (answered) this.batch = null;  // its previews (dots, strokes, boxes) are answered now
        this.render();
        if (answered) {
          const lat = (C.latencies[this.name] = C.latencies[this.name] || []);
          lat.push(performance.now() - b.t0); if (lat.length > 200) lat.shift();
          this.flush();
        }
      };
      if (d.image) this.images[d.image_key] = d.image;
      if (d.image_key && d.image_key !== this.imgKey) {
        const src = this.images[d.image_key]; if (!src) { show(); return; }
        const im = new Image();
        im.onload = () => { this.img = im; this.imgKey = d.image_key; this.fitted = null; this.fit(); show(); };
        im.src = src;
      } else {
        if (!d.image_key) { this.img = null; this.imgKey = null; }
        show();
      }
    }

    render() { this.renderLegend(); this.draw(); }

    renderLegend() {
      const d = this.data; if (!this.legend || !d) return;
      this.legend.innerHTML = "";
      const cur = this.pendingClass || d.current_class;
      for (const c of d.classes || []) {
        const item = el("span", "agl-cv-class" + (c.name === cur ? " agl-on" : ""));
        item.dataset.name = c.name;
        const sw = el("i", "agl-cv-swatch"); sw.style.background = c.color;
        item.append(sw, el("b", "", c.key ? String(c.key) : ""), document.createTextNode(" " + c.name));
        item.addEventListener("click", () => { const i = d.classes.indexOf(c); this.pendingClass = c.name; this.renderLegend(); this.send({ type: "class", index: i }); });
        this.legend.appendChild(item);
      }
      if (!(d.classes || []).length) this.legend.appendChild(el("span", "agl-cv-none", "no classes yet"));
      this.pos.textContent = d.pos_label || (d.count ? `${d.index + 1} of ${d.count}` : "—");
      const help = { prompt: "click = add · right-click / Shift+click = remove · drag = box · wheel = zoom · Space+drag = pan",
        brush: "drag to paint the selected mask", eraser: "drag to erase from the selected mask",
        polygon: "drag a vertex · double-click an edge = new vertex · Alt/right-click a vertex = remove it" };
      this.hint.textContent = (d.note ? d.note.replace(/\*\*/g, "") + " · " : "") + help[this.mode];
    }
  }

  C.Canvas = Canvas;  // drawing methods: assets/canvas_draw.js
  C.get = function (name) { return (C.inst[name] = C.inst[name] || new Canvas(name)); };
  C.take = function (name) { return C.get(name).take(); };
  C.done = function (name) { C.get(name).done(); return []; };
  C.receive = function (name, raw) { C.get(name).receive(raw); return []; };

  function tick() {  // mounts hosts as Gradio renders them and reads the server's views
    for (const host of document.querySelectorAll(".agl-canvas-host[data-canvas]")) {
      const c = C.get(host.dataset.canvas);
      if (c.host !== host || !host.dataset.mounted) c.mount(host);
      const ta = document.querySelector(`#${c.name}-canvas-data textarea, #${c.name}-canvas-data input`);
      if (ta && ta.value && ta.value !== c.raw) c.receive(ta.value);
    }
    requestAnimationFrame(tick);
  }
  function onKey(down) {
    return function (ev) {
      for (const c of Object.values(C.inst)) {
        if (c.key(ev, down)) { ev.preventDefault(); ev.stopPropagation(); return; }
      }
    };
  }
  document.addEventListener("keydown", onKey(true), true);
  document.addEventListener("keyup", onKey(false), true);
  requestAnimationFrame(tick);  // after canvas_draw.js (loaded in the same <script>) has added the drawing methods
})();
