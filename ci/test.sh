#!/usr/bin/env bash
# The whole test suite on both QIIME 2 lines (`make test`): Debian's QIIME 2 2022.11 (.venv,
# ci/setup.sh) and QIIME 2 2024.10 (.venv-q2-2024.10, built from ../shared/qiime2-2024.10).
# Each suite's counts are printed on its own line; fails if either suite fails (or collects no
# test).  ../shared/qiime2-2024.10 missing is a failure, not a skip: AAM_ONE_QIIME=1 runs the
# 2022.11 suite alone (say so when you use it).
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=../shared/qiime2-2024.10
V24=.venv-q2-2024.10
summary=()
rc=0

run_suite() {   # name python
  local name=$1 py=$2 log
  log=$(mktemp)
  echo "=== pytest on $name ($("$py" -c 'import qiime2; print("QIIME 2", qiime2.__version__)')) ===" >&2
  "$py" -m pytest -q -rs ${AAM_TESTS:-tests} 2>&1 | tee "$log"
  local r=${PIPESTATUS[0]}
  [ "$r" = 5 ] && { echo "[test] $name: pytest collected no tests" >&2; r=1; }
  summary+=("$name: $(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed).* =+$' "$log" | tail -1 | tr -d '=' | xargs) (exit $r)")
  rm -f "$log"
  [ "$r" = 0 ] || rc=1
}

run_suite "QIIME 2 2022.11 (Debian)" .venv/bin/python
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
    run_suite "QIIME 2 2024.10" "$V24/bin/python"
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
