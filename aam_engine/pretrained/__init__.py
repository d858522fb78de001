"""The encoder that ships with the engine: pretrained on public studies (built by
shipped_encoder/build_encoder.py from the corpus of shipped_encoder/build_corpus.py, at the
repository's root), read from package data with no network.  ``default_encoder()`` gives it
as a ModelBundle; ``card()`` its card."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "default"


def available() -> bool:
    return (DEFAULT_DIR / "config.json").exists() and (DEFAULT_DIR / "weights.safetensors").exists()


def _check():
    if not available():
        raise ValueError(f"The shipped encoder is missing from this installation ({DEFAULT_DIR}). "
                         "Reinstall q2-aam, or rebuild it with `make pretrained`.")


def card() -> dict:
    """The model card's facts (card.json): data, sizes, steps, commit, held-out results."""
    _check()
    return json.loads((DEFAULT_DIR / "card.json").read_text())


def default_encoder():
    """The shipped encoder (an encoder ModelBundle), validated like any model directory."""
    from ..io import read_model_dir
    _check()
    return read_model_dir(DEFAULT_DIR)
