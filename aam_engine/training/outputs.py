"""What a trained encoder gets after its training loop: the distance mix, fitted on the
training pairs."""
from __future__ import annotations

import numpy as np

from ..inference import run_model
from ..metrics import MAX_DISTANCE_ROWS, capped_rows, known_pairs, r2_score
from ..models.distance_head import fit_distance_mix, mixed_distances


def fit_sketch_mix(model, builder, train_rows, device, asv_cache=None,
                   max_rows: int = MAX_DISTANCE_ROWS) -> dict | None:
    """set_sketch, after training: the offset and the scales c, b of the embedding's learned
    part and ASV-set sketch, fitted (distance_head.fit_distance_mix) so that the distances of
    the mixed embedding match UniFrac on the training pairs.  Returns what was fitted and how
    well (R^2 on those pairs), or None without a sketch.  Fitted on validation pairs instead,
    the mix went wrong on unseen ibd-2538 subjects (R^2 -0.53 on one split): the validation
    subjects hold no shallow samples, on which the learned part overshoots, so they trusted it
    most where the test subjects needed it least."""
    K = model.cfg.set_sketch
    if not K:
        return None
    rows = np.asarray(train_rows)
    if len(rows) > max_rows:
        rows = np.sort(rows[capped_rows(len(rows), max_rows)])
    if len(rows) < 3:
        return None
    emb, learned = run_model(model, builder, rows, device, asv_cache,
                             ("embedding", "learned_embedding"))
    head = model.distance
    sketch = emb[:, -K:] / float(head.sketch_scale.log_scale.detach().exp())
    block = builder.distances.block(rows)
    dl, y = known_pairs(learned, block)
    ds = known_pairs(sketch, block)[0]
    if len(y) < 3:
        return None
    offset, c, b = fit_distance_mix(dl, ds, y)
    c, b = max(c, 1e-6), max(b, 1e-6)
    head.set_mix(offset, c, b)
    mixed = mixed_distances(dl, ds, offset, c, b)
    return {"samples": int(len(rows)), "offset": offset, "learned_scale": c,
            "sketch_scale": b,
            "r2_learned_alone": r2_score(y, dl + float(head.learned_offset().detach())),
            "r2_mixed": r2_score(y, mixed)}
