"""The model directory's format version, with what each minor version added."""

# Model directory format version.  Compatibility rule: a reader accepts every format version
# with the same major number and a minor number <= its own; a newer minor written by a newer
# engine is refused with a message naming both versions.
FORMAT_VERSION = "2.9"   # 2.1: embed_offset.offset (2.0 files read with offset 0)
#                          2.2: `ensemble` target heads heads.K.* (older: one head, renamed)
#                          2.3: head_kmer_size (older: heads read no k-mer spectrum)
#                          2.4: a setting since retired (io.model_dir.RETIRED)
#                          2.5: set_sketch; sketch_scale, mix_scale, mix_offset (older: none)
#                          2.6: the distance head's weights under distance.* (renamed)
#                          2.7: a stack of components (stacked.py): config.json "stack",
#                               tensors stack.*; older regressors / classifiers: heads alone
#                          2.8: a classifier's decision rule (config.json "decision") and
#                               its classes' training shares (target "priors"); older
#                               classifiers predict the most probable class
#                          2.9: the clusters block: its centres (tensor stack.clusters,
#                               config.json stack "clusters"), and an encoder's centres of
#                               its pretraining reads (extra "clusters"); older: none
# (io.model_dir reads every 2.x: one upgrade step per minor, each with a stored example)
