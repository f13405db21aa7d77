"""Florence-2 generation output -> pieces with probabilities (torch; used by the detector).

``returned_sequence`` picks the ids and the raw per-step logits of the sequence ``generate``
returned, for greedy and beam search alike; ``PieceScorer`` turns them into the pieces and
probabilities ``pipeline.detect.florence_parse.parse_tokens`` reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipeline.detect.florence_parse import LOC_BINS


@dataclass
class Generation:
    """One ``generate`` call's output, as pieces with probabilities.

    Attributes:
        pieces: each added token (``<s>``, ``</s>``, ``<loc_k>``, ...) alone; runs of ordinary text
            tokens decoded together.
        probs: one probability per piece (see ``FlorenceDetector.generate``).
        token_ids: the generated ids of the returned sequence (after the decoder start token).
        truncated: the output used its whole ``max_new_tokens`` budget (or stopped without EOS).
        max_new_tokens: the budget it ran with.
    """

    pieces: list[str]
    probs: list[float]
    token_ids: list[int]
    truncated: bool
    max_new_tokens: int


class PieceScorer:
    """Splits generated ids into pieces and scores them (see ``pieces``).

    Args:
        tokenizer: the Florence-2 tokenizer (with ``<loc_0>``..``<loc_999>`` added tokens).

    Raises:
        ValueError: the tokenizer lacks the location tokens.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        loc_ids = tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)])
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in loc_ids:
            raise ValueError(
                "processor: expected a Florence-2 tokenizer with <loc_0>..<loc_999> tokens, got "
                f"{type(tokenizer).__name__} without them; load the processor saved with the model"
            )
        self._loc_ids = torch.tensor(loc_ids, dtype=torch.long)
        self._bin_of_id = {tid: i for i, tid in enumerate(loc_ids)}
        # Added tokens (special, location, structural) are whole pieces; other ids are text.
        self._added = {tid: tok.content for tid, tok in tokenizer.added_tokens_decoder.items()}

    def pieces(
        self, ids: torch.Tensor, logits: torch.Tensor, loc_tolerance: int
    ) -> tuple[list[str], list[float]]:
        """(pieces, probabilities) of generated ``ids`` (n,) under their raw ``logits`` (n, vocab).

        Pieces: each added token alone, runs of ordinary text tokens decoded together (their
        probability the product of the run's softmax probabilities); a location token's
        probability is the softmax mass of the bins within ``loc_tolerance`` of its bin.
        """
        if len(ids) == 0:
            return [], []
        probs = torch.softmax(logits, dim=-1)
        chosen = probs.gather(1, ids[:, None])[:, 0]
        loc_probs = probs[:, self._loc_ids]  # (steps, 1000)
        cumulative = torch.nn.functional.pad(loc_probs.cumsum(dim=1), (1, 0))
        pieces: list[str] = []
        piece_probs: list[float] = []
        run: list[int] = []
        run_prob = 1.0

        def flush() -> None:
            nonlocal run, run_prob
            if run:
                text = self.tokenizer.decode(
                    run, skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                pieces.append(text)
                piece_probs.append(run_prob)
                run, run_prob = [], 1.0

        tol = int(loc_tolerance)
        for step, tid in enumerate(ids.tolist()):
            if tid in self._bin_of_id:
                flush()
                k = self._bin_of_id[tid]
                lo, hi = max(0, k - tol), min(LOC_BINS, k + tol + 1)
                pieces.append(self._added[tid])
                piece_probs.append(float((cumulative[step, hi] - cumulative[step, lo]).clamp(0, 1)))
            elif tid in self._added:
                flush()
                pieces.append(self._added[tid])
                piece_probs.append(float(chosen[step]))
            else:
                run.append(tid)
                run_prob *= float(chosen[step])
        flush()
        return pieces, piece_probs


def returned_sequence(out: Any, row: int = 0, eos: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (n,) int64, raw logits (n, vocab) float32) of returned sequence ``row``.

    Greedy search: step t's logits are row ``row`` of ``out.logits[t]``; in a batch the rows
    that ended early are padded until the last one ends, so the sequence is cut after its first
    ``eos`` (given). Beam search: ``out.logits[t]`` holds one row per running (batch x beam)
    hypothesis at step t, and ``out.beam_indices[row, t]`` names the row the returned sequence
    was extended from at that step (-1 after its end); that is the distribution its token was
    chosen from.
    """
    steps = len(out.logits)
    sequences = out.sequences
    beam_indices = getattr(out, "beam_indices", None)
    if beam_indices is None:
        n, rows = steps, [row] * steps
        start = sequences.shape[-1] - steps
        if eos is not None and steps:
            ends = torch.nonzero(sequences[row, start:] == eos)
            if len(ends):
                n = int(ends[0, 0]) + 1
    else:
        lengths = (beam_indices >= 0).sum(dim=1)
        n = int(lengths[row])
        rows = beam_indices[row, :n].tolist()
        start = sequences.shape[-1] - int(lengths.max())
    if n == 0:
        vocab = out.logits[0].shape[-1] if steps else 1
        return sequences[row, :0], torch.zeros((0, vocab))
    logits = torch.stack([out.logits[t][rows[t]] for t in range(n)]).float()
    return sequences[row, start:start + n], logits
