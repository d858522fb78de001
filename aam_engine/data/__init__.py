"""Data layer: tables, tokenizer, batches, distances, example data. No torch, no qiime2."""
from .batching import Batch, BatchBuilder, MatrixDistances
from .distances import (align_distances, batch_unifrac, check_distance_matrix, compute_unifrac,
                        read_distance_matrix)
from .table import SampleTable, load_biom, read_fasta, split_ids
from .tokenizer import tokenize

__all__ = ["Batch", "BatchBuilder", "MatrixDistances", "SampleTable", "align_distances",
           "batch_unifrac", "check_distance_matrix",
           "compute_unifrac", "load_biom", "read_distance_matrix", "read_fasta", "split_ids",
           "tokenize"]
