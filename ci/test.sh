#!/usr/bin/env bash
# The whole test suite (`make test`): the engine's tests once (they never import QIIME 2), on
# Debian's QIIME 2 2022.11 venv (.venv, ci/setup.sh); the check that the learning tests fail
# with training switched off; the plugin's tests on QIIME 2 2022.11 and on QIIME 2 2024.10
# (.venv-q2-2024.10, built from ../shared/qiime2-2024.10), with the engine's scikit-learn
# learners (test_stack.py) there too, since 2024.10 brings another scikit-learn.
# Each step's counts are printed on its own line; any failing fails it.
# ../shared/qiime2-2024.10 missing is a failure, not a skip: AAM_ONE_QIIME=1 runs the 2022.11
# steps alone (say so when you use it).  AAM_TESTS (paths) replaces the engine + plugin steps.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=../shared/qiime2-2024.10
V24=.venv-q2-2024.10
summary=()
rc=0

run_step() {   # name python pytest-args...
  local name=$1 py=$2 log
  shift 2
  log=$(mktemp)
  echo "=== $name ($("$py" -c 'import qiime2; print("QIIME 2", qiime2.__version__)')) ===" >&2
  "$py" -m pytest -q -rs -p no:cacheprovider --durations=10 "$@" 2>&1 | tee "$log"
  local r=${PIPESTATUS[0]}
  [ "$r" = 5 ] && { echo "[test] $name: pytest collected no tests" >&2; r=1; }
  summary+=("$name: $(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed).* =+$' "$log" | tail -1 | tr -d '=' | xargs) (exit $r)")
  rm -f "$log"
  [ "$r" = 0 ] || rc=1
}

untrained_must_fail() {   # the learning tests with training switched off: every one fails
  local log n_failed n_tests
  log=$(mktemp)
  echo "=== learning tests with training switched off (--untrained): each must FAIL ===" >&2
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/engine/test_learning.py --untrained \
    >"$log" 2>&1
  n_failed=$(grep -oE '[0-9]+ failed' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  n_tests=$(.venv/bin/python -m pytest -q -p no:cacheprovider --collect-only \
            tests/engine/test_learning.py 2>/dev/null | grep -c '::')
  if [ "$n_tests" -gt 0 ] && [ "$n_failed" = "$n_tests" ]; then
    summary+=("learning tests, training off: all $n_tests fail, as they must (exit 0)")
  else
    tail -20 "$log" >&2
    summary+=("learning tests, training off: $n_failed of $n_tests fail; every one must (exit 1)")
    rc=1
  fi
  rm -f "$log"
}

if [ -n "${AAM_TESTS:-}" ]; then
  run_step "QIIME 2 2022.11 (Debian): $AAM_TESTS" .venv/bin/python $AAM_TESTS
else
  run_step "engine (QIIME 2 2022.11 venv)" .venv/bin/python tests/engine
  untrained_must_fail
  run_step "plugin, QIIME 2 2022.11 (Debian)" .venv/bin/python tests/plugin
fi
if [ "${AAM_ONE_QIIME:-0}" = 1 ]; then
  summary+=("QIIME 2 2024.10: not run (AAM_ONE_QIIME=1)")
elif [ ! -f "$KIT/setup.sh" ]; then
  summary+=("QIIME 2 2024.10: FAILED, the kit $KIT is missing (AAM_ONE_QIIME=1 runs 2022.11 alone)")
  rc=1
else
  if bash "$KIT/setup.sh" "$V24" >/dev/null 2>ci-q2-2024.10-setup.log \
      && "$V24/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
         qiime-default-reference==0.1.3 >>ci-q2-2024.10-setup.log 2>&1; then
    rm -f ci-q2-2024.10-setup.log
    run_step "plugin + scikit-learn learners, QIIME 2 2024.10" "$V24/bin/python" \
      ${AAM_TESTS:-tests/plugin tests/engine/test_stack.py}
  else
    tail -30 ci-q2-2024.10-setup.log >&2
    summary+=("QIIME 2 2024.10: FAILED to set up (ci-q2-2024.10-setup.log)")
    rc=1
  fi
fi
echo
echo "=== test suites ==="
printf '%s\n' "${summary[@]}"
exit $rc
