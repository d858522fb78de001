"""Pretraining an encoder: self-supervised, on the UniFrac distances between the table's
samples (+ masked nucleotides where nuc_penalty > 0).  api.pretrain is its door; a fit given
distances but no encoder pretrains one here first."""
from __future__ import annotations

import dataclasses

from .config import (ENCODER_SIZES, ModelConfig, TrainConfig, apply_preset,
                     warn_size_mismatch)
from .data import SampleTable
from .inputs import Options, prepare_table, resolve_distances, resolve_sizes
from .io import ModelBundle
from .run import RunDirs, RunInputs, on_node, run_training


def pretrain_encoder(table: SampleTable, model_cfg: ModelConfig, train_cfg: TrainConfig,
                     distances=None, tree=None, groups=None, options: Options | None = None,
                     start: ModelBundle | None = None) -> ModelBundle:
    """An encoder pretrained on the table's UniFrac distances (api.pretrain); from the
    weights (and sizes) of the encoder ``start`` where one is given (pretraining continued on
    this table), else from scratch."""
    options = options or Options()
    if distances is not None or tree is not None:
        options = dataclasses.replace(options, distances=distances, tree=tree)
    # an encoder whatever the configuration was made for (a fit's classifier settings too)
    model_cfg = dataclasses.replace(model_cfg, task="encoder", n_outputs=1)
    model_cfg, train_cfg = apply_preset(model_cfg.validate(), train_cfg.validate())
    if start is not None:
        warn_size_mismatch(model_cfg.to_dict(), start.model_config,
                           "To pretrain at the sizes asked for, start from random weights "
                           "(a fit: pretrain_from='scratch'; pretrain: no start encoder).")
        model_cfg = dataclasses.replace(
            model_cfg, **{k: getattr(start.model_config, k) for k in ENCODER_SIZES})
    table = on_node(prepare_table, table, options.rarefaction_depth, train_cfg.random_seed)
    model_cfg = resolve_sizes(model_cfg, table, task="encoder", freeze_base=False)
    table, dist = on_node(resolve_distances, table, options.distances, options.tree,
                          options.metric)
    if dist is None and train_cfg.nuc_penalty == 0:
        raise ValueError("Pretraining needs a distance matrix or a phylogeny (or nuc_penalty > 0).")
    model, history, extra = run_training(table, model_cfg, train_cfg, "encoder",
                                         RunInputs(distances=dist, groups=groups,
                                                   encoder=start),
                                         RunDirs(options.checkpoint_dir, options.log_dir))
    extra["unifrac_metric"] = options.metric if options.tree is not None else "precomputed"
    extra["continued_from_an_encoder"] = start is not None
    # once per node under torchrun (the node's local rank 0; its ranks share the result)
    extra["clusters"] = on_node(read_clusters, model, table, train_cfg)
    return ModelBundle(model_cfg, train_cfg, model.state_dict(), {"type": "encoder"}, {},
                       history, extra)


def read_clusters(model, table: SampleTable, train_cfg: TrainConfig) -> dict:
    """The encoder's clusters of the reads it was pretrained on (the clusters block of a fit
    on it, aam_engine.features): k-means centres of their vectors, kept in the encoder."""
    from .features import CLUSTERS, cluster_centres
    from .inference import encoder_vectors
    model.eval()
    V = encoder_vectors(model, table, train_cfg.device)
    model.cpu()         # as run_training handed it over (encoder_vectors moves it)
    centres = cluster_centres(V, CLUSTERS, train_cfg.random_seed)
    return {"centres": centres.tolist(), "reads": int(table.n_features),
            "from": "k-means of the vectors of the reads the encoder was pretrained on"}
