"""Prefixed, time-ordered ids (``src_…``, ``obj_…``, ``trk_…``, ``ds_…``, ``frm_…``) and timestamps.

An id is ``prefix_`` + 24 lowercase Crockford base32 characters (ULID-style): the first 48 bits
are the creation time in milliseconds since the Unix epoch, the other 72 bits are random. The
alphabet is in ASCII order, so ids of one prefix sort by creation time as plain strings; the
primary-key B-trees then grow at their right edge (an insert touches the last page instead of
a random one).

Within one process ids are strictly increasing (monotonic like ULID): an id made in the same
millisecond as the previous one, or after the clock stepped back, continues from the previous
one (random part + 1). Across processes the 72 random bits keep ids unique (a batch of ``n``
ids occupies ``n`` consecutive random values from a random start: two processes' batches in the
same millisecond overlap with odds ~``2n / 2**71``).
"""
from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

import numpy as np

ID_CHARS = 24  # 48-bit millisecond time + 72 random bits, 5 bits per character
_TIME_BITS = 48
_RAND_BITS = 72
_RAND_MAX = 1 << _RAND_BITS
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32 (no i, l, o, u), ASCII-sorted
_ALPHABET_B = ALPHABET.encode("ascii")

_lock = threading.Lock()
_last = (0, 0)  # (ms, random part) of the newest id this process made


_SYMBOLS = np.frombuffer(_ALPHABET_B, dtype=np.uint8)
_SHIFTS = np.arange(55, -1, -5, dtype=np.uint64)  # 12 symbols of 5 bits per 60-bit lane
_LANE_MASK = (1 << 60) - 1


def _reserve(n: int) -> tuple[int, int]:
    """``(ms, first random value)`` for ``n`` consecutive ids after the last one made here."""
    global _last
    now = time.time_ns() // 1_000_000
    # Start in the lower half of the random range so a batch never overflows into the next ms.
    start = int.from_bytes(os.urandom(9), "big") >> 1
    with _lock:
        last_ms, last_rand = _last
        if now <= last_ms:  # same millisecond, or the clock went back: continue the sequence
            now, start = last_ms, last_rand + 1
            if start + n > _RAND_MAX:
                now, start = last_ms + 1, int.from_bytes(os.urandom(9), "big") >> 1
        _last = (now, start + n - 1)
    if now >= 1 << _TIME_BITS:
        raise RuntimeError(f"expected a clock before the year 10889, got {now} ms since the epoch")
    return now, start


def new_id(prefix: str) -> str:
    """``prefix_`` + 24 base32 characters that sort by creation time, e.g.
    ``obj_01jd8x3k9q2mx7aebf4c1vz0hw``."""
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, n: int) -> list[str]:
    """``n`` increasing ids at once (one clock read and one ``os.urandom`` call).

    The 120 bits of an id are two 60-bit lanes of 12 symbols each, formatted with numpy for the
    whole batch: the time and the random part's top 12 bits, and its low 60 bits (+ i, the carry
    moved into the first lane). ``base64.b32encode`` is a Python loop on 3.11 (~2 us per id).
    """
    if n <= 0:
        return []
    n = int(n)
    ms, start = _reserve(n)
    low = np.uint64(start & _LANE_MASK) + np.arange(n, dtype=np.uint64)
    top = np.uint64((ms << 12) | (start >> 60)) + (low >> np.uint64(60))
    low &= np.uint64(_LANE_MASK)
    head = np.frombuffer(f"{prefix}_".encode("ascii"), dtype=np.uint8)
    k = head.size
    out = np.empty((n, k + ID_CHARS), dtype=np.uint32)  # UCS-4 code points: one str per row
    out[:, :k] = head
    out[:, k:k + 12] = _SYMBOLS[((top[:, None] >> _SHIFTS) & np.uint64(31)).astype(np.intp)]
    out[:, k + 12:] = _SYMBOLS[((low[:, None] >> _SHIFTS) & np.uint64(31)).astype(np.intp)]
    return out.view(f"<U{k + ID_CHARS}").ravel().tolist()


def id_time_ms(object_id: str) -> int:
    """The creation time (ms since the Unix epoch) encoded in a time-ordered id.

    Raises:
        ValueError: the id has no ``prefix_`` + 24 base32 characters (an older random id).
    """
    _, _, body = object_id.partition("_")
    if len(body) != ID_CHARS or any(c not in ALPHABET for c in body):
        raise ValueError(
            f"expected a time-ordered id (prefix_ + {ID_CHARS} base32 characters), got {object_id!r}; "
            "ids made before time-ordered ids carry no time"
        )
    value = 0
    for c in body:
        value = (value << 5) | ALPHABET.index(c)
    return value >> _RAND_BITS


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
