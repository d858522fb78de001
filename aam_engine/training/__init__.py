from .trainer import TaskData, Trainer

__all__ = ["TaskData", "Trainer"]
