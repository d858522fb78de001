"""q2-aam: the QIIME 2 face of aam_engine.  Importing this package never imports torch."""
from aam_engine import __version__

__all__ = ["__version__"]
