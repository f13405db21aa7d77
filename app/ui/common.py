"""Shared UI helpers: error conversion, cross-tab handles."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from app.context import is_weights_missing

log = logging.getLogger("app.ui")

TAB_IDS = {
    "Auto-label": "autolabel",
    "Refine": "refine",
    "Review": "review",
    "Video": "video",
    "Search": "search",
    "Classify": "classify",
    "Export": "export",
    "Train": "train",
    "Stats": "stats",
}


def friendly(exc: BaseException) -> str:
    """The short, actionable text shown for a known error."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith("'"):
        text = text.strip("'\"")
    return text


def from_api_client(request: Any = None) -> bool:
    """True when the running event was called by a program, not by the browser page.

    A program: ``gradio_client`` (it sends ``x-gradio-user: api`` with every call), a raw HTTP
    caller (curl, scripts: no ``Referer``/``Origin``, which a page's fetch always sends), or a
    direct call (tests, scripts: no request at all). Only the page gets the calm path.
    """
    if request is None:
        try:
            from gradio.context import LocalContext

            request = LocalContext.request.get(None)
        except Exception:  # pragma: no cover - a Gradio without the context variable
            request = None
    if request is None:
        return True
    headers = getattr(request, "headers", None) or {}
    try:
        if str(headers.get("x-gradio-user", "")).lower() == "api":
            return True
        return not (headers.get("referer") or headers.get("origin"))
    except Exception:  # pragma: no cover - odd header containers
        return False


def _calm(fn, msg: str):
    """What a handler returns in the browser after an error: a warning toast, no output touched.

    One ``gr.skip()`` skips every output of the event (Gradio 6 expands a single skip to all
    outputs), so no output component enters Gradio's error state (the red "Error" badge that
    covers an image, a table or a checkbox list until dismissed). When the handler was wired
    with :func:`errors_in_status`, the message is also written into the tab's status line.
    """
    gr.Warning(msg.replace("**", "").replace("*", "").replace("`", ""))  # a toast shows no Markdown
    slot = getattr(fn, "_agl_status_slot", None)
    if slot is None:
        return gr.skip()
    at, n = slot
    out = [gr.skip()] * n
    out[at] = f"⚠ {msg}"
    return out[0] if n == 1 else tuple(out)


def ui_errors(fn):
    """Turns exceptions into messages a person can act on, without covering the work.

    Known errors (``gr.Error``, ValueError, KeyError, FileNotFoundError, RuntimeError incl.
    missing weights) show their message; anything else is logged with its trace and shown as
    one short line. The message goes where the caller can see it:

    * **the browser page**: a warning toast (``gr.Warning``), plus the tab's status line when
      the handler was wired with :func:`errors_in_status`; every other output is skipped
      (``gr.skip()``), so no output shows Gradio's red "Error" badge or blocks clicks.
    * **API clients** (``gradio_client``, which sends ``x-gradio-user: api``; raw HTTP callers
      without ``Referer``/``Origin``) and direct calls (no request): ``gr.Error`` is raised, so
      the client gets an exception with the message (``AppError``) for a failed call, as before
      (see :func:`from_api_client`).

    Without this, Gradio (``show_error=False``) would show nothing at all.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            if from_api_client():
                raise
            return _calm(wrapper, friendly_gr(exc))
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
            if not is_weights_missing(exc):
                log.info("%s: %s", fn.__name__, exc)
            if from_api_client():
                raise gr.Error(friendly(exc), print_exception=False) from exc
            return _calm(wrapper, friendly(exc))
        except Exception as exc:
            log.exception("unexpected error in %s", fn.__name__)
            msg = (f"Unexpected error ({type(exc).__name__}: {str(exc)[:160]}). "
                   "The server log has the details.")
            if from_api_client():
                raise gr.Error(msg, print_exception=False) from exc
            return _calm(wrapper, msg)

    return wrapper


def friendly_gr(exc: gr.Error) -> str:
    """The text of a ``gr.Error`` (its ``message``)."""
    return str(getattr(exc, "message", None) or exc).strip() or "Error"


def errors_in_status(fn, outputs: list, status: Any) -> list:
    """Wires ``fn``'s browser errors into ``status`` (one of ``outputs``); returns ``outputs``.

    Use inline where the event is wired: ``btn.click(f, ins, errors_in_status(f, outs, status))``.
    ``fn`` must be a :func:`ui_errors` handler; wire it to one output list only.
    """
    fn._agl_status_slot = (outputs.index(status), len(outputs))
    return outputs


@dataclass
class Shared:
    """Components one tab needs from another (e.g. Search opening an object in Refine)."""

    tabs: Any = None
    parts: dict[str, Any] = field(default_factory=dict)
    # wiring that needs tabs built later (Auto-label -> Refine/Review); build_app runs these
    # inside the Blocks once every tab exists
    after: list[Any] = field(default_factory=list)
