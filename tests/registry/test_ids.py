"""Time-ordered ids: they sort by creation time, increase within a process, and stay unique
across processes."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry.ids import ALPHABET, ID_CHARS, id_time_ms, new_id, new_ids

ROOT = Path(__file__).resolve().parents[2]


def test_ids_carry_their_creation_time_and_sort_by_it():
    before = time.time_ns() // 1_000_000
    first = new_ids("obj", 300)
    single = new_id("obj")
    while time.time_ns() // 1_000_000 <= before + 2:  # at least one later millisecond
        pass
    later = new_ids("obj", 300)
    after = time.time_ns() // 1_000_000
    everything = first + [single] + later
    assert everything == sorted(everything) and len(set(everything)) == 601
    for oid in everything:
        assert oid.startswith("obj_") and len(oid) == 4 + ID_CHARS
        assert set(oid[4:]) <= set(ALPHABET)
        assert before <= id_time_ms(oid) <= after
    assert id_time_ms(later[0]) > id_time_ms(first[0])
    assert new_ids("src", 0) == []
    with pytest.raises(ValueError, match="time-ordered id"):
        id_time_ms("obj_k3v9q2mx7aeb")  # an older random id


def test_ids_increase_even_when_made_in_the_same_millisecond():
    ids = [new_id("trk") for _ in range(2000)]  # far more than one per millisecond
    assert ids == sorted(ids) and len(set(ids)) == 2000


_WORKER = """
import json, sys
from registry.ids import new_ids
out = []
for _ in range(40):
    out += new_ids("obj", 500)
print(json.dumps(out))
"""


def test_ids_are_unique_across_processes():
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    a, b = outs
    assert len(a) == len(b) == 20_000
    assert a == sorted(a) and b == sorted(b)  # each process's ids increase
    assert not set(a) & set(b) and len(set(a) | set(b)) == 40_000
    # both ran at about the same time: their ids interleave in time order rather than collide
    assert abs(id_time_ms(a[0]) - id_time_ms(b[0])) < 60_000


@pytest.mark.parametrize("start", [0, (1 << 60) - 3, (1 << 71) - 700, 0x5A5A5A5A5A5A5A5A5A >> 1])
def test_ids_are_the_base32_of_time_and_counter(monkeypatch, start):
    """Each id is the 24 Crockford symbols of ``ms << 72 | (start + i)``, carries across the
    formatter's 60-bit lanes included (start just below 2**60 steps over one)."""
    import registry.ids as ids_mod

    ms = 1_764_000_000_123
    monkeypatch.setattr(ids_mod, "_reserve", lambda n: (ms, start))
    got = new_ids("obj", 600)
    for i, oid in enumerate(got):
        value = (ms << 72) | (start + i)
        want = "".join(ALPHABET[(value >> (5 * (23 - k))) & 31] for k in range(24))
        assert oid == "obj_" + want, i
        assert id_time_ms(oid) == ms
    assert type(got[0]) is str and got == sorted(got)
