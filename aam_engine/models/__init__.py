from .aam import AAM, ASVEncoder, SampleEncoder

__all__ = ["AAM", "ASVEncoder", "SampleEncoder"]
