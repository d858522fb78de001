# q2-aam.  Every target sets up the environment first (ci/setup.sh is quick when done).
VENV := .venv
PY := $(VENV)/bin/python
QIIME := $(VENV)/bin/qiime

.PHONY: setup test demo bench lint clean

setup:
	@bash ci/setup.sh

# The whole test suite.  pytest's exit 5 ("no tests collected") is a failure here too.
test: setup
	@$(PY) -m pytest -q tests

demo: setup
	@bash ci/demo.sh

bench: setup
	@$(PY) bench/throughput.py --device cpu --quick

lint: setup
	@$(PY) -m pyflakes aam_engine q2_aam tests bench

clean:
	rm -rf demo-output .pytest_cache
