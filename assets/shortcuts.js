// Review keyboard shortcuts: A approve, R reject, N / ArrowRight next, P / ArrowLeft previous.
// Active only while the Review tab is visible and the focus is not in a text field, so typing
// a class name never approves anything.
(function () {
  if (window.__aglShortcuts) return;
  window.__aglShortcuts = true;
  const keys = {
    a: "review-approve", r: "review-reject",
    n: "review-next", arrowright: "review-next",
    p: "review-prev", arrowleft: "review-prev",
  };
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    const tag = (t && t.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
    const id = keys[(ev.key || "").toLowerCase()];
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null) return;  // Review tab not shown
    const btn = el.tagName === "BUTTON" ? el : el.querySelector("button") || el;
    ev.preventDefault();
    btn.click();
  });
})();
