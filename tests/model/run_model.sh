#!/usr/bin/env bash
# Runs the SPIN model of xatm's commit protocols (tests/model/xatm.pml) for CTest (label model).
#
#   run_model.sh model  NAME [--claims=safety] -DPROTO=... [-D...]   every property holds (exhaustive)
#   run_model.sh mutant NAME -DPROTO=... -DMUTANT_...  some property must fail (a counterexample)
#
# model: `spin -a`, pan compiled with gcc, then one acceptance-mode run (`pan -a`) per claim:
# `safety` (atomicity, write-ahead and no decision forgotten in one never claim) and
# `termination` (with weak fairness, -f). A search cut by the depth bound fails: it proved nothing.
# mutant: a breadth-first search per safety claim (shortest counterexample); at least one claim
# must fail, and the script says which (the first one; XATM_MODEL_ALL_CLAIMS=1: every one). Prints states stored and seconds for every run.
# XATM_MODEL_DEPTH bounds the search depth (default 200000); XATM_MODEL_CC the C compiler (cc).
set -euo pipefail

mode=${1:?usage: run_model.sh model|mutant NAME -D...}
name=${2:?usage: run_model.sh model|mutant NAME -D...}
shift 2
claims="safety termination"
if [[ ${1:-} == --claims=* ]]; then
  claims=${1#--claims=}
  shift
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
depth=${XATM_MODEL_DEPTH:-200000}
cc=${XATM_MODEL_CC:-cc}
command -v spin >/dev/null || { echo "model: spin is not installed (Debian package spin)" >&2; exit 1; }

work="model-$name"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
cp "$here/xatm.pml" .
spin -a "$@" xatm.pml >spin.out 2>&1 || { cat spin.out >&2; exit 1; }

compile() {  # $1: extra C defines
  # shellcheck disable=SC2086
  "$cc" -O2 -w -DCOLLAPSE -DVECTORSZ=2048 -DNFAIR=3 $1 -o pan pan.c
}

# run CLAIM ARGS...: one pan run; sets errors, states, seconds, cut
run() {
  local claim=$1
  shift
  local start end
  start=$(date +%s.%N)
  ./pan "$@" -N "$claim" >"$claim.out" 2>&1 || true
  end=$(date +%s.%N)
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$claim.out" | head -1)
  states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$claim.out" | head -1)
  seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
  cut=$(grep -c 'max search depth too small' "$claim.out" || true)
  [[ -n $errors ]] || { cat "$claim.out" >&2; echo "model $name: pan did not report for $claim" >&2; exit 1; }
}

if [[ $mode == model ]]; then
  compile ""
  failed=0
  for claim in $claims; do
    if [[ $claim == termination ]]; then run "$claim" -a -f -m"$depth"; else run "$claim" -a -m"$depth"; fi
    echo "model $name [$*]: $claim: errors $errors, states stored $states, ${seconds} s"
    if [[ $errors != 0 ]]; then
      failed=1
      spin -t -N "$claim" "$@" xatm.pml 2>&1 | grep -E 'MSC|assert|CYCLE' | head -20 >&2 || true
      echo "model $name: $claim violated; replay: cd $PWD && spin -t -p -g -l $* xatm.pml" >&2
    elif [[ $cut != 0 ]]; then
      failed=1
      echo "model $name: $claim: search cut at depth $depth: raise XATM_MODEL_DEPTH" >&2
    fi
  done
  exit "$failed"
fi

[[ $mode == mutant ]] || { echo "run_model.sh: mode is model or mutant" >&2; exit 2; }
compile "-DBFS"
caught=()
for claim in atomicity write_ahead decision_kept; do
  run "$claim"
  echo "mutant $name [$*]: $claim: errors $errors, states stored $states, ${seconds} s"
  [[ $errors == 0 ]] || caught+=("$claim")
  # A claim that holds costs a full search: CI stops at the first counterexample.
  [[ ${#caught[@]} -eq 0 || ${XATM_MODEL_ALL_CLAIMS:-0} == 1 ]] || break
done
if [[ ${#caught[@]} -eq 0 ]]; then
  echo "mutant $name: NOT caught: no property fails, so the model does not see this defect" >&2
  exit 1
fi
echo "mutant $name: caught by ${caught[*]}"
