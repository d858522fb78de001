"""Data layer: tables, tokenizer, batches, distances, example data. No torch, no qiime2."""
from .batching import Batch, BatchBuilder, MatrixDistances, ReadNoise
from .distances import (PartDistances, align_distances, batch_unifrac, check_distance_matrix,
                        compute_unifrac, part_distances, read_distance_matrix)
from .table import SampleTable, load_biom, merge_tables, read_fasta, split_ids
from .tokenizer import tokenize

__all__ = ["Batch", "BatchBuilder", "MatrixDistances", "ReadNoise", "PartDistances", "SampleTable",
           "align_distances", "batch_unifrac", "check_distance_matrix", "compute_unifrac",
           "load_biom", "merge_tables", "part_distances", "read_distance_matrix", "read_fasta",
           "split_ids", "tokenize"]
