// The labeling canvas shared by Refine and Auto-label (docs/canvas.md).
// The page holds, per canvas NAME: a host <div class="agl-canvas-host" data-canvas=NAME> (a gr.HTML),
// a hidden textbox #NAME-canvas-data (the server's view as JSON) and a hidden button
// #NAME-canvas-send whose click event runs js="() => [aglCanvas.take(NAME), ...]" and then the
// Python handler with the events. Coordinates sent are absolute image pixels, (x, y), x = column.
(function () {
  if (window.aglCanvas) return;
  const C = { inst: {}, latencies: {} };
  window.aglCanvas = C;
  const DOT = 7;          // click dot radius in screen px (14 px across, with a 2 px ring)
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
  function rgb(hex) {
    const v = parseInt((hex || "#ff00ff").slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
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
        prompt: btn("mode-prompt", "✚ Click / box", "click = add, right-click or Shift+click = remove, drag = box (V)", () => this.setMode("prompt")),
        brush: btn("mode-brush", "✎ Brush", "paint the selected mask (B)", () => this.setMode("brush")),
        eraser: btn("mode-eraser", "⌫ Eraser", "erase from the selected mask (E)", () => this.setMode("eraser")),
        polygon: btn("mode-polygon", "⬠ Polygon", "drag vertices, double-click an edge to add one, Alt/right-click a vertex to remove it (P)", () => this.setMode("polygon")),
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
      if (!this.cv || this.cv.offsetParent === null || !this.data) return false;  // tab not shown
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
      if (k === "Delete" || k === "Backspace") { this.send({ type: "delete", index: this.data.selected }); return true; }
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
      if (modes[lower]) { this.setMode(modes[lower]); return true; }
      if (k === "Escape") { this.drag = null; this.setMode("prompt"); return true; }
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
          (C.latencies[this.name] = C.latencies[this.name] || []).push(performance.now() - b.t0);
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

    maskCanvas(o) {
      const key = o.index; if (this.masks[key]) return this.masks[key];
      const [bx, by, w, h] = o.mask.bbox; if (!w || !h) return null;
      const off = document.createElement("canvas"); off.width = w; off.height = h;
      const g = off.getContext("2d"), im = g.createImageData(w, h), px = im.data, [r, gg, b] = rgb(o.color);
      let p = 0;
      o.mask.rle.forEach((n, i) => {
        if (i % 2) for (let k = p; k < p + n; k++) { const q = k * 4; px[q] = r; px[q + 1] = gg; px[q + 2] = b; px[q + 3] = 120; }
        p += n;
      });
      g.putImageData(im, 0, 0);
      return (this.masks[key] = { off, bx, by });
    }

    draw() {
      if (!this.g) return;
      const g = this.g, dpr = window.devicePixelRatio || 1, v = this.view, d = this.data;
      g.setTransform(1, 0, 0, 1, 0, 0); g.fillStyle = "#20232a"; g.fillRect(0, 0, this.cv.width, this.cv.height);
      if (!d || !d.width) { this.drawEmpty(g, dpr); return; }
      g.setTransform(v.s * dpr, 0, 0, v.s * dpr, v.tx * dpr, v.ty * dpr);
      g.imageSmoothingEnabled = v.s < 2;
      if (this.img) g.drawImage(this.img, 0, 0, d.width, d.height);
      g.imageSmoothingEnabled = false;
      for (const o of d.objects) {
        const m = o.mask && !o.dropped ? this.maskCanvas(o) : null;
        if (m) g.drawImage(m.off, m.bx, m.by);
      }
      g.setTransform(dpr, 0, 0, dpr, 0, 0);  // screen space: lines and dots keep their size
      for (const o of d.objects) this.drawBox(g, o.box, o.color, o.index === d.selected ? 3 : 2, o.dropped ? [4, 4] : null, o.label + (o.dropped ? " (dropped)" : ""), o.dropped ? 0.5 : 1);
      if (d.prompt_box) this.drawBox(g, d.prompt_box, "#ffd400", 1.5, [6, 4]);
      const pts = d.points.map((p, i) => [p[0], p[1], d.labels[i]]);
      const pending = [...(this.batch ? this.batch.events : []), ...this.queue];
      for (const e of pending) if (e.preview && e.preview.point) pts.push(e.preview.point);
      for (const [x, y, lab] of pts) this.drawDot(g, x, y, lab);
      for (const e of pending) {
        if (e.preview && e.preview.stroke) this.drawStroke(g, e.preview.stroke, e.radius, e.preview.erase);
        if (e.preview && e.preview.box) this.drawBox(g, e.preview.box, "#ffffff", 2, [6, 4]);
      }
      const dr = this.drag;
      if (dr && dr.kind === "prompt" && dr.moved && !dr.neg) this.drawBox(g, [dr.x0, dr.y0, dr.x1, dr.y1], "#ffffff", 2, [6, 4]);
      if (dr && dr.kind === "stroke") this.drawStroke(g, dr.pts, this.size, this.mode === "eraser");
      if (this.mode === "polygon") this.drawPolygons(g, dr && dr.kind === "vertex" ? dr : null);
      if ((this.mode === "brush" || this.mode === "eraser") && this.cursor) {
        const [sx, sy] = this.toScreen(this.cursor[0], this.cursor[1]);
        g.beginPath(); g.arc(sx, sy, Math.max(2, this.size * v.s), 0, 7); g.lineWidth = 1.5;
        g.strokeStyle = "#000"; g.stroke(); g.setLineDash([3, 3]); g.strokeStyle = "#fff"; g.stroke(); g.setLineDash([]);
      }
    }
    drawEmpty(g, dpr) {
      g.setTransform(dpr, 0, 0, dpr, 0, 0); g.fillStyle = "#aab"; g.font = "14px sans-serif";
      g.fillText((this.data && this.data.note) || "Nothing open yet.", 16, 28);
    }
    drawBox(g, b, color, w, dash, label, alpha) {
      if (!b) return;
      const [x0, y0] = this.toScreen(b[0], b[1]), [x1, y1] = this.toScreen(b[2], b[3]);
      g.globalAlpha = alpha || 1; g.setLineDash(dash || []); g.lineWidth = w + 2; g.strokeStyle = "rgba(0,0,0,0.6)";
      g.strokeRect(x0, y0, x1 - x0, y1 - y0); g.lineWidth = w; g.strokeStyle = color; g.strokeRect(x0, y0, x1 - x0, y1 - y0);
      g.setLineDash([]);
      if (label) {
        g.font = "12px sans-serif"; const tw = g.measureText(label).width + 8, ty = y0 > 18 ? y0 - 17 : y0 + 1;
        g.fillStyle = color; g.fillRect(x0, ty, tw, 16); g.fillStyle = "#000"; g.fillText(label, x0 + 4, ty + 12);
      }
      g.globalAlpha = 1;
    }
    drawDot(g, x, y, lab) {
      const [sx, sy] = this.toScreen(x, y);
      g.beginPath(); g.arc(sx, sy, DOT + 2, 0, 7); g.fillStyle = "#000"; g.fill();
      g.beginPath(); g.arc(sx, sy, DOT, 0, 7); g.fillStyle = "#fff"; g.fill();
      g.beginPath(); g.arc(sx, sy, DOT - 2, 0, 7); g.fillStyle = lab ? "#22c32e" : "#e53935"; g.fill();
      g.fillStyle = "#fff"; g.fillRect(sx - 3, sy - 1, 6, 2); if (lab) g.fillRect(sx - 1, sy - 3, 2, 6);
    }
    drawStroke(g, pts, radius, erase) {
      if (!pts || !pts.length) return;
      g.beginPath(); pts.forEach((p, i) => { const [sx, sy] = this.toScreen(p[0], p[1]); if (i) g.lineTo(sx, sy); else g.moveTo(sx, sy); });
      if (pts.length === 1) { const [sx, sy] = this.toScreen(pts[0][0], pts[0][1]); g.lineTo(sx + 0.01, sy); }
      g.lineCap = "round"; g.lineJoin = "round"; g.lineWidth = Math.max(2, 2 * radius * this.view.s);
      g.strokeStyle = erase ? "rgba(20,20,20,0.55)" : "rgba(255,255,255,0.5)"; g.stroke();
    }
    drawPolygons(g, dragging) {
      const o = this.selectedObject(); if (!o || !o.polygons) return;
      o.polygons.forEach((ring, ri) => {
        const pts = dragging && dragging.ring === ri ? dragging.ringPts : ring;
        g.beginPath(); pts.forEach((p, i) => { const [sx, sy] = this.toScreen(p[0], p[1]); if (i) g.lineTo(sx, sy); else g.moveTo(sx, sy); });
        g.closePath(); g.lineWidth = 2; g.strokeStyle = "#fff"; g.stroke();
        for (const p of pts) {
          const [sx, sy] = this.toScreen(p[0], p[1]);
          g.fillStyle = "#000"; g.fillRect(sx - 5, sy - 5, 10, 10); g.fillStyle = o.color; g.fillRect(sx - 3.5, sy - 3.5, 7, 7);
        }
      });
    }
  }

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
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", tick); else tick();
})();
