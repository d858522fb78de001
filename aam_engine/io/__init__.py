"""Reading and writing models: the safe model directory (JSON + safetensors, no pickle) and
every older format version it can still read."""
from .model_dir import ModelBundle, read_model_dir, validate_model_dir, write_model_dir

__all__ = ["ModelBundle", "read_model_dir", "validate_model_dir", "write_model_dir"]
