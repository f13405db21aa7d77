// Video tab keyboard steps: ArrowLeft / ArrowRight = previous / next frame, with Shift = 10 frames.
// Active only while the Video tab is visible and the focus is not in a text field (the slider's
// own number box and range input keep their native arrow-key behaviour), also when a cell of
// the track list has the focus.
(function () {
  if (window.__aglVideoKeys) return;
  window.__aglVideoKeys = true;
  const keys = { arrowleft: ["video-prev", "video-back10"], arrowright: ["video-next", "video-fwd10"] };
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    const tag = (t && t.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
    const ids = keys[(ev.key || "").toLowerCase()];
    if (!ids) return;
    const el = document.getElementById(ids[ev.shiftKey ? 1 : 0]);
    if (!el || el.offsetParent === null) return;  // Video tab not shown
    const btn = el.tagName === "BUTTON" ? el : el.querySelector("button") || el;
    ev.preventDefault();
    // Captured at the document and stopped here, so the track table's own arrow-key cell
    // navigation (which would fire a row select = a jump) never sees the key.
    ev.stopPropagation();
    btn.click();
  }, true);
})();
