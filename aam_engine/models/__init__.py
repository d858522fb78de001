"""The network: the AAM model (nucleotide encoder, sample encoder, target heads), its distance
head and the layers they share."""
from .aam import AAM, ASVEncoder, SampleEncoder

__all__ = ["AAM", "ASVEncoder", "SampleEncoder"]
