# q2-aam.  Every target sets up the environment first (ci/setup.sh is quick when done).
VENV := .venv
PY := $(VENV)/bin/python
QIIME := $(VENV)/bin/qiime

.PHONY: setup test demo bench lint clean corpus pretrained

setup:
	@bash ci/setup.sh

# The whole test suite, on QIIME 2 2022.11 (Debian) and on 2024.10 (built from
# ../shared/qiime2-2024.10 into .venv-q2-2024.10): ci/test.sh, which fails if either fails.
test: setup
	@bash ci/test.sh

demo: setup
	@bash ci/demo.sh

bench: setup
	@$(PY) bench/throughput.py --device cpu --quick

# The encoder that ships in aam_engine/pretrained/default: the corpus (../shared/data/corpus
# mapped to Greengenes V4 reads), then pretraining on it (about an hour on 2 CPU cores;
# rerun to resume from build/encoder-ckpt).  shipped_encoder/README.md says what each step does.
corpus: setup
	@$(PY) shipped_encoder/build_corpus.py --out build/corpus

pretrained: corpus
	@$(PY) shipped_encoder/build_encoder.py --corpus build/corpus --checkpoint-dir build/encoder-ckpt

lint: setup
	@$(PY) -m pyflakes aam_engine q2_aam tests bench

clean:
	rm -rf demo-output .pytest_cache
