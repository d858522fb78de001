"""aam_engine: the AAM training library (PyTorch + numpy). Never imports qiime2."""

__version__ = "0.1.0"

# the model directory's format version lives with the format (io/format.py)
from .io.format import FORMAT_VERSION  # noqa: E402

__all__ = ["FORMAT_VERSION", "__version__"]
