"""Training: the loop (trainer), losses, schedulers, metrics, distributed helpers.

``TaskData`` / ``Trainer`` are imported lazily so that ``training.metrics`` stays torch-free."""

__all__ = ["TaskData", "Trainer"]


def __getattr__(name):
    if name in __all__:
        from . import trainer
        return getattr(trainer, name)
    raise AttributeError(name)
