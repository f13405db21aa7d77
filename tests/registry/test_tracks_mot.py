"""registry.formats.mot: MOTChallenge gt.txt / seqinfo.ini writers, read back by motmetrics."""
from __future__ import annotations

import motmetrics as mm
import pytest

from registry.formats.mot import (
    MotBox,
    gt_lines,
    read_gt,
    read_seqinfo,
    seqinfo_text,
    write_sequence,
)


def test_gt_lines_are_one_based_sorted_and_exact():
    boxes = [MotBox(4, 2, (10, 20.5, 30, 40), 1), MotBox(0, 1, (0, 0, 5.25, 6), 2, occluded=True),
             MotBox(4, 1, (1.0000001, 2, 3, 4), 2)]
    assert gt_lines(boxes) == ["1,1,1,1,5.25,6,1,2,0.5", "5,1,2,3,3,4,1,2,1.0", "5,2,11,21.5,30,40,1,1,1.0"]
    with pytest.raises(ValueError, match="track and class numbers >= 1"):
        gt_lines([MotBox(0, 0, (0, 0, 1, 1), 1)])


def test_write_sequence_reads_back_with_motmetrics_and_our_reader(tmp_path):
    boxes = [MotBox(f, t, (3 * f + 10 * t, 5, 8, 9), t) for f in range(3) for t in (1, 2)]
    seq = write_sequence(tmp_path, "clip", boxes, frame_rate=29.97, seq_length=3, width=64, height=48)
    assert read_seqinfo(seq / "seqinfo.ini") == {"name": "clip", "frameRate": "29.97", "seqLength": "3",
                                                 "imWidth": "64", "imHeight": "48", "imExt": ".png"}
    df = mm.io.loadtxt(str(seq / "gt" / "gt.txt"), fmt="mot15-2D")
    assert len(df) == 6
    row = df.loc[(3, 2)]  # frame_idx 2 -> frame 3; motmetrics takes the 1 off x, y again
    assert (row["X"], row["Y"], row["Width"], row["Height"], row["ClassId"]) == (26, 5, 8, 9, 2)
    assert read_gt(seq / "gt" / "gt.txt")[-1] == (3, 2, 26.0, 5.0, 8.0, 9.0, 1.0, 2, 1.0)
    assert seqinfo_text("x", frame_rate=25.0, seq_length=1, width=2, height=2).splitlines()[2] == "frameRate=25"
