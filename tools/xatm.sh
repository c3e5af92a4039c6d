#!/usr/bin/env bash
# xatm's developer entry point: installs what the build needs (Debian 12), builds, and runs the
# tests or the demo against throwaway database servers. Needs no terminal and no standard input.
#
#   tools/xatm.sh test                   build, run every test (CTest starts the servers), fuzz
#                                        the parsers, then build and run the suite again under
#                                        ASan+UBSan and under TSan (no report allowed)
#   tools/xatm.sh test [ctest args...]   build, then run just that selection (plain build)
#   tools/xatm.sh test --sanitize [address|thread] [ctest args...]
#                                        only the sanitizer pass(es), with that selection
#   tools/xatm.sh demo                   build, start servers, run the PG -> MariaDB demo and the
#                                        order demo with a wallet service over HTTP (TCC), stop them
#   tools/xatm.sh servers start|stop|status|env
#                                        throwaway PostgreSQL + MariaDB servers to poke at
#   tools/xatm.sh build                  install packages, configure and build
#   tools/xatm.sh bench [xatm-bench args...]
#                                        Release build in build-release/, then xatm-bench against
#                                        throwaway servers and the micro-benchmarks; the tables,
#                                        JSON, CSV and SVG chart go to build/bench/
#
# The build goes to build/ at the repository root ($XATM_BUILD_DIR overrides it), the sanitizer
# builds to <build>-asan/ and <build>-tsan/. With CI=true, warnings are errors. The benchmarks build in build-release/ ($XATM_RELEASE_BUILD_DIR): Release,
# no crash points, no tests.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build_dir=${XATM_BUILD_DIR:-build}
servers_sh="$repo/lib/testing/servers.sh"

# dpkg-dev (dpkg-shlibdeps) and file: what `cpack -G DEB` needs (the debian_package test).
readonly packages=(
  cmake g++ make pkg-config dpkg-dev file
  libpq-dev libmariadb-dev-compat libboost-log-dev libsqlite3-dev doctest-dev libcpp-httplib-dev
  libcli11-dev nlohmann-json3-dev
  postgresql-15 mariadb-server
  clang libclang-rt-14-dev
  faketime iproute2 openssl
  spin
)

say() { printf 'xatm: %s\n' "$*"; }
die() {
  printf 'xatm: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# Installs the packages above plus any named as arguments.
ensure_packages() {
  local wanted=("${packages[@]}" "$@")
  if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian system: make sure these (or their equivalents) are installed: ${wanted[*]}"
    return 0
  fi
  local missing=() package
  for package in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    printf 'xatm: missing Debian packages; install them with:\n  sudo apt-get install -y %s\n' \
      "${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q </dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

absolute_build_dir() {
  mkdir -p "$build_dir"
  (cd "$build_dir" && pwd)
}

configure_and_build() {
  local dir=${1:-$build_dir}
  shift || true
  local werror=OFF
  [[ "${CI:-}" == true ]] && werror=ON
  say "configuring $dir (XATM_WERROR=$werror${*:+ $*})"
  cmake -S . -B "$dir" -DXATM_CRASH_POINTS=ON -DXATM_WERROR="$werror" "$@" >/dev/null
  say "building $dir with $(nproc) jobs"
  cmake --build "$dir" -j "$(nproc)"
}

# The whole suite again in a sanitizer build: `address` (ASan + UBSan) or `thread` (TSan). Any
# report fails the test that caused it (the builds use -fno-sanitize-recover, halt_on_error).
# The random-kill crash suites run fewer rounds here: the sanitizers make each round several
# times slower, and the rounds are alike; the plain build runs them in full.
run_sanitized() {
  local sanitizer=$1
  shift
  local dir setting
  case "$sanitizer" in
    address) dir="$build_dir-asan" setting="address;undefined" ;;
    thread) dir="$build_dir-tsan" setting="thread" ;;
    *) die "unknown sanitizer '$sanitizer' (address or thread)" ;;
  esac
  # xatm-bench is not built: no test runs it, and its numbers would mean nothing here.
  configure_and_build "$dir" -DXATM_SANITIZE="$setting" -DXATM_BUILD_BENCH=OFF
  say "running the tests under $setting"
  ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
    XATM_CRASH_ROUNDS="${XATM_SANITIZE_CRASH_ROUNDS:-12}" \
    XATM_3PC_CRASH_ROUNDS="${XATM_SANITIZE_CRASH_ROUNDS:-12}" \
    ctest --test-dir "$dir" --output-on-failure --no-tests=error "$@"
}

cmd_test() {
  ensure_packages
  if [[ "${1:-}" == --sanitize ]]; then
    shift
    local which=(address thread)
    if [[ "${1:-}" == address || "${1:-}" == thread ]]; then
      which=("$1")
      shift
    fi
    local sanitizer
    for sanitizer in "${which[@]}"; do run_sanitized "$sanitizer" "$@"; done
    return 0
  fi
  configure_and_build
  say "running the tests"
  ctest --test-dir "$build_dir" --output-on-failure --no-tests=error "$@"
  # With ctest arguments (a selection) the caller wants just those; a full run also fuzzes the
  # parsers for a bounded time and runs everything again under the sanitizers.
  if [[ $# -eq 0 ]]; then
    say "fuzzing the XID and connection-string parsers for ${XATM_FUZZ_SECONDS:-30} s"
    "$repo/tests/fuzz/run.sh" "${XATM_FUZZ_SECONDS:-30}" "$(absolute_build_dir)/fuzz"
    run_sanitized address
    run_sanitized thread
  fi
}

# One value of the servers' env file (KEY=VALUE, the value is the rest of the line).
env_value() {
  local env=$1 key=$2 line
  while IFS= read -r line; do
    if [[ "${line%%=*}" == "$key" ]]; then
      printf '%s\n' "${line#*=}"
      return 0
    fi
  done <<<"$env"
  die "$key is missing from the servers' env file"
}

stop_demo_servers() {
  local status=$?
  if [[ -n "${wallet_pid:-}" ]]; then
    kill "$wallet_pid" 2>/dev/null || true
    wait "$wallet_pid" 2>/dev/null || true
  fi
  say "stopping the demo servers"
  "$servers_sh" stop >/dev/null || say "warning: could not stop the demo servers"
  exit "$status"
}

cmd_demo() {
  ensure_packages
  configure_and_build
  local demo="$build_dir/examples/xatm-demo"
  [[ -x "$demo" ]] || die "$demo was not built"
  # Global: the EXIT trap runs after this function's locals are gone.
  export XATM_SERVERS_STATE
  XATM_SERVERS_STATE="$(absolute_build_dir)/demo-servers.state"
  # The servers go away however the demo ends.
  trap stop_demo_servers EXIT
  trap 'exit 130' INT TERM
  say "starting PostgreSQL and MariaDB"
  "$servers_sh" start
  local env
  env=$("$servers_sh" env)
  XATM_DEMO_PG=$(env_value "$env" XATM_TEST_PG)
  XATM_DEMO_MYSQL=$(env_value "$env" XATM_TEST_MYSQL)
  export XATM_DEMO_PG XATM_DEMO_MYSQL
  # The decision log lives with the servers, so every demo starts from a fresh log.
  local log_dir recover
  log_dir="$(env_value "$env" XATM_TEST_DIR)/demo-log"
  recover=("$build_dir/recovery/xatm-recover" --log "$log_dir/decisions.db"
    --rm "payments_pg=postgresql:$XATM_DEMO_PG" --rm "ledger_mariadb=mariadb:$XATM_DEMO_MYSQL")

  say "part 1: transfers from PostgreSQL to MariaDB"
  "$demo" run "$log_dir"

  say "part 2: a transfer whose process is killed right after the commit decision is durable"
  local status=0
  XATM_CRASH_AT=after_decision_durable "$demo" crash "$log_dir" || status=$?
  [[ $status -eq 137 ]] || die "the crashing transfer should have been killed (exit 137), it exited $status"
  say "killed (SIGKILL). Both branches are left prepared; the databases still show the old balances:"
  "$demo" show "$log_dir"
  say "what xatm-recover would do (--dry-run):"
  status=0
  "${recover[@]}" --dry-run || status=$?
  [[ $status -eq 1 ]] || die "xatm-recover --dry-run should report work to do (exit 1), it exited $status"

  say "part 3: xatm-recover commits them, as the decision log says"
  "${recover[@]}"
  say "after recovery, both databases agree:"
  "$demo" show "$log_dir"

  demo_tcc "$(env_value "$env" XATM_TEST_DIR)"
}

# The wallet service (examples/wallet_service.cpp) in the background, on `port` (0: any free
# one), with any extra environment given; sets wallet_pid and XATM_DEMO_WALLET.
start_wallet() {
  local dir=$1 port=$2
  shift 2
  local out="$dir/wallet.out.$port"
  : >"$out"
  env "$@" "$build_dir/examples/xatm-example-wallet" --db "postgresql:$XATM_DEMO_PG" \
    --state-dir "$dir/wallet-state" --port "$port" >"$out" 2>>"$dir/wallet.err" </dev/null &
  wallet_pid=$!
  local waited=0
  until grep -q '^wallet listening on ' "$out"; do
    kill -0 "$wallet_pid" 2>/dev/null || die "the wallet service did not start: see $dir/wallet.err"
    ((waited++ < 300)) || die "the wallet service did not start within 30 s"
    sleep 0.1
  done
  XATM_DEMO_WALLET="http://$(sed -n 's/^wallet listening on //p' "$out" | head -n 1)"
  export XATM_DEMO_WALLET
}

stop_wallet() {
  kill "$wallet_pid" 2>/dev/null || true
  wait "$wallet_pid" 2>/dev/null || true
  wallet_pid=
}

# Parts 4 to 6: an order service whose one business step takes stock in MariaDB and records the
# order in PostgreSQL (XA branches) and reserves the price in a wallet service over HTTP (a TCC
# branch; examples/order_service.cpp and wallet_service.cpp).
demo_tcc() {
  local dir="$1/demo-tcc"
  mkdir -p "$dir"
  local orders="$build_dir/examples/xatm-example-orders"
  [[ -x "$orders" ]] || die "$orders was not built"
  local log_dir="$dir/orders-log"
  start_wallet "$dir" 0
  local port=${XATM_DEMO_WALLET##*:}
  local recover=("$build_dir/recovery/xatm-recover" --log "$log_dir/decisions.db"
    --rm "stock_mariadb=mariadb:$XATM_DEMO_MYSQL" --rm "orders_pg=postgresql:$XATM_DEMO_PG"
    --tcc "wallet=$XATM_DEMO_WALLET")

  say "part 4: orders across MariaDB (stock), PostgreSQL (orders) and a wallet service over HTTP ($XATM_DEMO_WALLET)"
  "$orders" setup "$log_dir"
  "$orders" order "$log_dir" o1 2 30
  "$orders" order "$log_dir" o2 1 500  # carol has 70 left: the wallet refuses the try

  say "part 5: an order whose process is killed right after the commit decision is durable"
  local status=0
  XATM_CRASH_AT=after_decision_durable "$orders" order "$log_dir" o3 1 20 || status=$?
  [[ $status -eq 137 ]] || die "the crashing order should have been killed (exit 137), it exited $status"
  say "killed (SIGKILL). The XA branches are prepared and the wallet holds the reservation:"
  "$orders" show "$log_dir"
  say "xatm-recover commits the XA branches and confirms the wallet's branch, as the decision log says:"
  "${recover[@]}"
  "$orders" show "$log_dir"

  say "part 6: a late try: the wallet now takes 4 s to answer a try; the order gives up after 2 s"
  stop_wallet
  start_wallet "$dir" "$port" XATM_WALLET_DELAY_TRY_MS=4000
  "$orders" order "$log_dir" o4 1 10
  say "the cancel reached the wallet before the try: recorded as an empty cancel. Waiting for the late try..."
  sleep 3
  say "the late try was refused by the barrier (the wallet's log says so); nothing is reserved, nothing hangs:"
  grep 'refused_after_cancel' "$dir/wallet.err" | tail -n 1 || die "the wallet did not refuse the late try"
  "$orders" show "$log_dir"
  stop_wallet
}

# xatm-bench with the settings docs/performance.md was made with (a few minutes), then the two
# micro-benchmarks. xatm-bench starts and stops its own throwaway servers.
cmd_bench() {
  ensure_packages libbenchmark-dev
  local release_dir=${XATM_RELEASE_BUILD_DIR:-build-release}
  local out_dir="$build_dir/bench"
  say "configuring $release_dir (Release)"
  cmake -S . -B "$release_dir" -DCMAKE_BUILD_TYPE=Release -DXATM_BUILD_TESTS=OFF >/dev/null
  say "building the benchmarks with $(nproc) jobs"
  cmake --build "$release_dir" -j "$(nproc)" --target xatm-bench xatm-decision-log-bench xatm-engine-bench
  mkdir -p "$out_dir"
  local args=("$@")
  [[ ${#args[@]} -gt 0 ]] || args=(--seconds 5 --warmup 1 --clients 1,4,16)
  say "running xatm-bench ${args[*]} (outputs in $out_dir)"
  local status=0
  "$release_dir/tools/xatm-bench" --json "$out_dir/bench.json" --csv "$out_dir/bench.csv" \
    --chart "$out_dir/bench.svg" "${args[@]}" | tee "$out_dir/bench.txt" || status=$?  # pipefail: the bench's
  local micro
  for micro in xatm-decision-log-bench xatm-engine-bench; do
    say "running $micro"
    "$release_dir/tools/$micro" | tee "$out_dir/$micro.txt" || status=1
  done
  [[ $status -eq 0 ]] || die "xatm-bench failed (exit $status): see $out_dir/bench.txt"
  say "done: $out_dir/bench.txt, bench.json, bench.csv, bench.svg and the micro-benchmarks' .txt"
}

cmd_servers() {
  [[ $# -eq 1 ]] || usage
  ensure_packages
  export XATM_SERVERS_STATE
  XATM_SERVERS_STATE="$(absolute_build_dir)/dev-servers.state"
  case "$1" in
    start)
      if ! "$servers_sh" start; then
        "$servers_sh" stop >/dev/null 2>&1 || true
        die "the servers did not start"
      fi
      say "connection strings ($build_dir/dev-servers.state):"
      "$servers_sh" env
      say "stop them with: tools/xatm.sh servers stop"
      ;;
    stop | status | env) "$servers_sh" "$1" ;;
    *) usage ;;
  esac
}

main() {
  [[ $# -ge 1 ]] || usage
  local command=$1
  shift
  case "$command" in
    test) cmd_test "$@" ;;
    demo) [[ $# -eq 0 ]] || usage; cmd_demo ;;
    servers) cmd_servers "$@" ;;
    build) [[ $# -eq 0 ]] || usage; ensure_packages; configure_and_build ;;
    bench) cmd_bench "$@" ;;
    -h | --help | help) usage ;;
    *)
      printf 'xatm: unknown command: %s\n' "$command" >&2
      usage
      ;;
  esac
}

main "$@"
