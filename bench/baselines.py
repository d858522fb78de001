"""The baselines of every benchmark: aam_engine.baselines (one home; fits use it too)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aam_engine.baselines import BASELINES, NAMES  # noqa: E402

__all__ = ["BASELINES", "NAMES"]
