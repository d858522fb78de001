"""Nucleotide tokenizer: vectorised over many sequences at once (numpy lookup table).

Tokens: PAD=0, A=1, C=2, G=3, T=4, N=5 (N and every other IUPAC code), START=6, MASK=7.
Every tokenized row begins with START, so no row is ever all padding.
"""
from __future__ import annotations

import numpy as np

PAD, A, C, G, T, N, START, MASK = range(8)
VOCAB_SIZE = 8
NUC_CLASSES = 6  # what the masked-nucleotide head predicts: PAD..N (PAD never a target)

IUPAC = set("ACGTUNRYSWKMBDHV")
_LUT = np.full(256, N, dtype=np.uint8)
_LUT[0] = PAD
for _ch, _tok in zip("ACGTU", (A, C, G, T, T)):
    _LUT[ord(_ch)] = _tok
    _LUT[ord(_ch.lower())] = _tok


def normalize_sequence(seq: str) -> str:
    """Upper-case, drop alignment gaps ('-', '.') and whitespace, RNA U -> T."""
    s = "".join(str(seq).split()).replace("-", "").replace(".", "").upper()
    return s.replace("U", "T")


def invalid_characters(seq: str) -> set[str]:
    """Characters of a normalized sequence that are not IUPAC nucleotide codes."""
    return set(seq) - IUPAC


def tokenize(sequences, max_bp: int = 150, dtype=np.int64) -> np.ndarray:
    """Tokenize sequences to an array [n, max_bp + 1] (START + cut/padded bases); ``dtype``
    uint8 holds every token in 1/8 of int64's memory (what a table keeps per feature).

    Sequences longer than ``max_bp`` are cut; shorter ones are padded with PAD.  Characters
    other than A/C/G/T/U (any case) become N.  One Python operation per sequence, none per base.
    """
    if max_bp < 1:
        raise ValueError(f"max_bp must be >= 1, got {max_bp}")
    seqs = list(sequences)
    out = np.zeros((len(seqs), max_bp + 1), dtype=dtype)
    out[:, 0] = START
    if not seqs:
        return out
    # NUL-padded fixed-width bytes -> one lookup for the whole block
    blob = "".join(s[:max_bp].ljust(max_bp, "\0") for s in seqs).encode("latin-1", "replace")
    out[:, 1:] = _LUT[np.frombuffer(blob, dtype=np.uint8)].reshape(len(seqs), max_bp)
    return out


def detokenize(tokens: np.ndarray) -> list[str]:
    """Inverse of :func:`tokenize` for inspection (START/PAD dropped, MASK shown as '?')."""
    alphabet = np.array(list("\0ACGTN\0?"))
    return ["".join(alphabet[row[row != PAD]]).replace("\0", "") for row in np.asarray(tokens)]


def mask_tokens(tokens: np.ndarray, ratio: float, rng, strategy: str = "random",
                span: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Mask nucleotide positions for the masked-nucleotide objective.

    Returns (masked tokens, targets) where targets hold the original token at masked positions
    and -100 (ignored by cross-entropy) elsewhere.  START and PAD are never masked.  'span'
    masks runs of ``span`` consecutive bases starting at randomly chosen positions.  ``rng``: a
    numpy Generator, or uniform numbers of the tokens' shape (keyed ones, data.keyed, so that an
    ASV's masks do not depend on which process builds its batch).
    """
    tokens = np.asarray(tokens)
    maskable = (tokens != PAD) & (tokens != START)
    if ratio <= 0:
        return tokens.copy(), np.full(tokens.shape, -100, dtype=np.int64)
    u = rng.random(tokens.shape) if isinstance(rng, np.random.Generator) else np.asarray(rng)
    if strategy == "random":
        chosen = (u < ratio) & maskable
    elif strategy == "span":
        starts = (u < ratio / max(span, 1)) & maskable
        chosen = starts.copy()
        for k in range(1, span):
            chosen[:, k:] |= starts[:, :-k]
        chosen &= maskable
    else:
        raise ValueError(f"mask strategy must be 'random' or 'span', got {strategy!r}")
    targets = np.where(chosen, tokens, -100).astype(np.int64)
    masked = np.where(chosen, MASK, tokens).astype(np.int64)
    return masked, targets
