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
    "Search": "search",
    "Export": "export",
    "Stats": "stats",
}


def friendly(exc: BaseException) -> str:
    """The short, actionable text shown for a known error."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith("'"):
        text = text.strip("'\"")
    return text


def ui_errors(fn):
    """Turns exceptions into ``gr.Error`` toasts a person can act on.

    Known errors (ValueError, KeyError, FileNotFoundError, RuntimeError incl. missing weights)
    show their message; anything else is logged with its trace and shown as one short line.
    Without this, Gradio (``show_error=False``) would show nothing at all.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
            if not is_weights_missing(exc):
                log.info("%s: %s", fn.__name__, exc)
            raise gr.Error(friendly(exc), print_exception=False) from exc
        except Exception as exc:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(exc).__name__}: {str(exc)[:160]}). "
                           "The server log has the details.", print_exception=False) from exc

    return wrapper


@dataclass
class Shared:
    """Components one tab needs from another (e.g. Search opening an object in Refine)."""

    tabs: Any = None
    parts: dict[str, Any] = field(default_factory=dict)
