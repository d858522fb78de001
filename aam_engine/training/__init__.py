"""Training: the loop (trainer), losses, schedulers, distributed helpers (metrics, which need
no torch, live in aam_engine.metrics)."""
from .trainer import TaskData, Trainer

__all__ = ["TaskData", "Trainer"]
