"""Prefixed random ids (``src_…``, ``obj_…``, ``trk_…``, ``ds_…``, ``frm_…``) and timestamps."""
from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

ID_CHARS = 12  # 12 base32 characters = 60 random bits: ~1e-6 collision odds at 1M objects


def new_id(prefix: str) -> str:
    """``prefix_`` + 12 lowercase base32 characters, e.g. ``obj_k3v9q2mx7aeb``."""
    return f"{prefix}_{base64.b32encode(os.urandom(8)).decode('ascii')[:ID_CHARS].lower()}"


def new_ids(prefix: str, n: int) -> list[str]:
    """``n`` ids at once (one ``os.urandom`` call: cheaper for large batches)."""
    raw = os.urandom(8 * n)
    return [
        f"{prefix}_{base64.b32encode(raw[i:i + 8]).decode('ascii')[:ID_CHARS].lower()}"
        for i in range(0, 8 * n, 8)
    ]


def utc_now() -> str:
    """Current UTC time as the schema stores it: ``YYYY-MM-DDTHH:MM:SS.sssZ``."""
    return format_ts(datetime.now(UTC))


def format_ts(value: datetime | str) -> str:
    """A datetime (naive = UTC) or an ISO string, in the schema's timestamp format."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
