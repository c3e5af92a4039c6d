#!/usr/bin/env bash
# Every crash point of the code has a step of the same name in the model (tests/model/xatm.pml)
# or a line in crash_points_not_modelled.txt saying why not, and the model and the list name no
# crash point the code does not have. Code: XATM_CRASH_POINT("name") in lib/, and for
# XATM_CRASH_POINT(variable) the string literals of that variable's assignment in the same file.
# XATM_MODEL_EXTRA_CODE_POINT=name pretends the code has one more (the test of this test).
set -euo pipefail
repo=${1:?usage: check_crash_points.sh REPO}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

code=$(
  {
    grep -rhoE 'XATM_CRASH_POINT\("[a-z_0-9]+"\)' "$repo/lib" | sed -E 's/.*\("([a-z_0-9]+)"\)/\1/'
    grep -rlE 'XATM_CRASH_POINT\([a-z_][a-z_0-9]*\)' "$repo/lib" | while read -r file; do
      grep -hoE 'XATM_CRASH_POINT\([a-z_][a-z_0-9]*\)' "$file" | grep -v '(name)' | sed -E 's/.*\((.*)\)/\1/' |
        sort -u | while read -r variable; do
          found=$(awk -v v="$variable" '
            $0 ~ "[^a-z_]" v " *=[^=]" { on = 1 }
            on { while (match($0, /"[a-z_0-9]+"/)) { print substr($0, RSTART + 1, RLENGTH - 2); $0 = substr($0, RSTART + RLENGTH) } }
            on && /;/ { on = 0 }' "$file")
          [[ -n $found ]] || { echo "crash point variable $variable in $file: no assignment of names found" >&2; exit 1; }
          echo "$found"
        done
    done
    [[ -z ${XATM_MODEL_EXTRA_CODE_POINT:-} ]] || echo "$XATM_MODEL_EXTRA_CODE_POINT"
  } | sort -u
)
model=$(grep -v '^#define' "$here/xatm.pml" | grep -oE 'CRASH_POINT\([a-z_0-9]+\)' | sed -E 's/.*\((.*)\)/\1/' | sort -u)
listed=$(grep -vE '^(#|$)' "$here/crash_points_not_modelled.txt" | awk '{ print $1 }' | sort -u)

status=0
report() { echo "$1" >&2; status=1; }
for name in $code; do
  grep -qx "$name" <<<"$model" || grep -qx "$name" <<<"$listed" ||
    report "crash point $name is in the code but has no model step and is not in crash_points_not_modelled.txt"
done
for name in $model; do
  grep -qx "$name" <<<"$code" || report "model step $name is no crash point of the code"
  grep -qx "$name" <<<"$listed" && report "$name is modelled and listed as not modelled"
done
for name in $listed; do
  grep -qx "$name" <<<"$code" || report "crash_points_not_modelled.txt lists $name, which the code does not have"
done
echo "crash points: $(wc -w <<<"$code") in the code, $(wc -w <<<"$model") modelled, $(wc -w <<<"$listed") listed as not modelled"
exit "$status"
