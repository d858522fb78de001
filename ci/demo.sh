#!/usr/bin/env bash
# The main job end to end on the project's own example data, through `qiime aam ...`:
# simulate -> import -> pretrain (UniFrac from the tree) -> fit-regressor (from the encoder)
# -> predict-regression -> summarize (+ q2-sample-classifier's scatterplot).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-output}
Q=.venv/bin/qiime
PY=.venv/bin/python
rm -rf "$OUT" && mkdir -p "$OUT"
# small on purpose: a few minutes on 2 CPU cores
SIZE="--p-embedding-dim 32 --p-attention-heads 4 --p-attention-layers 2 --p-token-limit 128"

echo "== 1. example data (simulated ASVs on a random tree; age and group drive abundances)"
$PY -m aam_engine simulate --output "$OUT/data" --n-samples 80 --n-features 150 >/dev/null
$Q tools import --type 'FeatureTable[Frequency]' --input-format BIOMV210Format \
  --input-path "$OUT/data/table.biom" --output-path "$OUT/table.qza"
$Q tools import --type 'FeatureData[Sequence]' --input-path "$OUT/data/sequences.fasta" \
  --output-path "$OUT/sequences.qza"
$Q tools import --type 'Phylogeny[Rooted]' --input-path "$OUT/data/tree.nwk" \
  --output-path "$OUT/tree.qza"

echo "== 2. pretrain an encoder on UniFrac (computed from the tree)"
$Q aam pretrain --i-table "$OUT/table.qza" --i-sequences "$OUT/sequences.qza" \
  --i-phylogeny "$OUT/tree.qza" $SIZE --p-epochs 15 \
  --m-validation-groups-file "$OUT/data/metadata.tsv" --m-validation-groups-column subject \
  --o-model "$OUT/encoder.qza" --o-history "$OUT/pretrain-history.qza"

echo "== 3. fine-tune a regressor for 'age' from the encoder"
$Q aam fit-regressor --i-table "$OUT/table.qza" --i-sequences "$OUT/sequences.qza" \
  --i-encoder "$OUT/encoder.qza" --m-metadata-file "$OUT/data/metadata.tsv" \
  --m-metadata-column age $SIZE --p-epochs 25 \
  --m-validation-groups-file "$OUT/data/metadata.tsv" --m-validation-groups-column subject \
  --o-model "$OUT/regressor.qza" --o-history "$OUT/regressor-history.qza"

echo "== 4. predict, summarize, and hand the predictions to q2-sample-classifier"
$Q aam predict-regression --i-model "$OUT/regressor.qza" --i-table "$OUT/table.qza" \
  --i-sequences "$OUT/sequences.qza" --o-predictions "$OUT/predictions.qza"
$Q aam summarize --i-model "$OUT/regressor.qza" --o-visualization "$OUT/regressor-summary.qzv"
$Q aam summarize --i-model "$OUT/encoder.qza" --o-visualization "$OUT/encoder-summary.qzv"
$Q sample-classifier scatterplot --i-predictions "$OUT/predictions.qza" \
  --m-truth-file "$OUT/data/metadata.tsv" --m-truth-column age \
  --o-visualization "$OUT/predictions-scatter.qzv"

# the two plots that say whether it worked, as PNGs a terminal user can open without a browser
for pair in "regressor-summary:validation" "encoder-summary:distances"; do
  viz=${pair%%:*}; png=${pair##*:}
  $Q tools export --input-path "$OUT/$viz.qzv" --output-path "$OUT/.$viz" >/dev/null
  cp "$OUT/.$viz/$png.png" "$OUT/$viz-$png.png" && rm -rf "$OUT/.$viz"
done

echo
echo "The regressor's summary says (regressor-summary.qzv, out of fold):"
$PY - "$OUT/regressor.qza" <<'VERDICT'
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("/data/config.json"))
    print(json.loads(z.read(name))["extra"]["stack"]["verdict"])
VERDICT
echo
echo "Done. Outputs in $OUT/:"
ls -1 "$OUT"/*.qza "$OUT"/*.qzv "$OUT"/*.png
echo "View a visualization with: qiime tools view $OUT/regressor-summary.qzv (or https://view.qiime2.org);"
echo "the validation scatter of the regressor and the encoder's distance fit are also in"
echo "  $OUT/regressor-summary-validation.png and $OUT/encoder-summary-distances.png"
