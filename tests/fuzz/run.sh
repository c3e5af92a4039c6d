#!/usr/bin/env bash
# Builds the parsers' libFuzzer target with clang (ASan + UBSan) and runs it for a bounded time.
#   tests/fuzz/run.sh [seconds=60] [work dir=build/fuzz]
# Prints how many inputs were tried; exits non-zero on any finding (the crashing input is kept
# in the work dir).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-60}
work=${2:-$repo/build/fuzz}
mkdir -p "$work/corpus"
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (Debian: apt-get install clang)" >&2; exit 1; }

# Seeds: one valid input of each kind.
printf '2019652657_dG0xLjEuMQ==_MQ==' >"$work/corpus/gid"
printf "X'746d2e312e31',X'31',2019652657" >"$work/corpus/literal"
printf 'tm.1.2.p3' >"$work/corpus/gtrid"
printf "host=/tmp port=5432 password='a\\\\'b'" >"$work/corpus/conninfo"
printf 'shop_eu-1' >"$work/corpus/name"
printf 'postgresql://u:pw@h1:5432,h2/db?sslmode=verify-full&password=x' >"$work/corpus/uri"

clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$repo/include" -I"$repo/lib" \
  "$repo/tests/fuzz/parsers_fuzz.cpp" "$repo/lib/core/xid.cpp" "$repo/lib/core/codec.cpp" \
  "$repo/lib/postgresql/postgresql_xid.cpp" "$repo/lib/mysql/mysql_xid.cpp" \
  "$repo/lib/core/connection_settings.cpp" "$repo/lib/core/result.cpp" -o "$work/parsers_fuzz"

cd "$work"
status=0
./parsers_fuzz -max_total_time="$seconds" -max_len=512 -print_final_stats=1 corpus >fuzz.log 2>&1 || status=$?
grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|what\(\)' fuzz.log || true
executed=$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz.log | tail -n 1)
echo "fuzz: ${executed:-an unknown number of} inputs tried (run for at most ${seconds} s)"
if [[ $status -ne 0 ]] || grep -q 'deadly signal\|ERROR: libFuzzer\|SUMMARY: ' fuzz.log; then
  echo "fuzz: FINDING (exit $status); the input is in $work/crash-* (see $work/fuzz.log)" >&2
  exit 1
fi
