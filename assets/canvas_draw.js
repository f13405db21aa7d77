// Drawing for the labeling canvas (assets/canvas.js): image, mask runs, boxes, click dots,
// strokes, polygon outlines. Screen-space sizes (dots, lines, vertex handles) do not scale with
// the zoom; masks are decoded from their run lengths into an ImageData once per view.
(function () {
  const C = window.aglCanvas;
  if (!C || !C.Canvas || C.Canvas.prototype.draw) return;
  const DOT = 7;  // click dot radius in screen px (14 px across, with a 2 px ring)
  function rgb(hex) {
    const v = parseInt((hex || "#ff00ff").slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }

  class Draw {
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

  for (const name of Object.getOwnPropertyNames(Draw.prototype)) {
    if (name !== "constructor") C.Canvas.prototype[name] = Draw.prototype[name];
  }
})();
