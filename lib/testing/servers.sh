#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and MariaDB 10.11 servers for xatm's tests (docs/design.md section 10).
#
# Both servers live in one temp dir under /tmp and listen on unix sockets there, and with TLS on
# TCP on 127.0.0.1 (ports picked free at start, listed in the env file); the certificates come
# from a throwaway CA made in the temp dir (tls/). System instances are never touched. $XATM_SERVERS_STATE names a small file that holds the temp dir's path, so
# every subcommand run with the same state file talks to the same servers.
#
#   start              start both servers (a no-op when they already run); fails, never skips
#   stop               stop both and remove the temp dir and the state file (always succeeds)
#   status             print each server's state; exit 1 unless both answer
#   env                print the env file (KEY=VALUE, the value is the rest of the line)
#   kill-mysql         kill -9 mariadbd and wait until it is gone
#   start-mysql        start mariadbd again on the same data dir
#   restart-mysql      stop mariadbd cleanly, then start it
#   stop-pg-immediate  pg_ctl stop -m immediate (PostgreSQL's crash-like shutdown)
#   start-pg           start PostgreSQL again on the same data dir
#   restart-pg         stop PostgreSQL (fast), then start it
#   start-pg-standby   start a physical standby of PostgreSQL (pg_basebackup -R, hot standby,
#                      unix socket only: XATM_TEST_PG_STANDBY in the env file); no-op if it runs
#   stop-pg-standby    stop the standby and remove its data dir (`stop` stops it too)
#
# As root, PostgreSQL refuses to run: initdb, pg_ctl and postgres then run as `nobody` (or
# $XATM_SERVERS_PG_USER) and the temp dir is handed to that user; mariadbd runs with --user=root.
set -euo pipefail

readonly mysql_password="xatm pass'%\"w0rd"  # hostile on purpose: tests quoting and redaction
# PostgreSQL trusts every local role except xatm_pw, whose password is really checked (scram).
readonly pg_password="pg pw'%\"\\ s3cr3t %27"  # hostile too: quote, percent, backslash, spaces
# MariaDB's xatm_tls user (REQUIRE SSL, TCP only in practice): the tests put it in option files.
readonly mysql_tls_password="tls pw%s3cr3t"
readonly start_timeout=${XATM_SERVERS_TIMEOUT:-60}  # seconds each server gets to answer

say() { printf 'servers: %s\n' "$*"; }
fail() {
  printf 'servers: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

state_file() {
  [[ -n "${XATM_SERVERS_STATE:-}" ]] ||
    fail "XATM_SERVERS_STATE is not set (it names the file that records the servers' temp dir)"
  printf '%s\n' "$XATM_SERVERS_STATE"
}

# The temp dir of the current servers, or nothing when there is none.
current_dir() {
  local state
  state=$(state_file)
  [[ -f "$state" ]] || return 0
  local dir
  dir=$(head -n 1 "$state")
  [[ "$dir" == /tmp/xatm-servers.* ]] || fail "$state does not hold a servers dir: '$dir'"
  printf '%s\n' "$dir"
}

require_dir() {
  local dir
  dir=$(current_dir)
  [[ -n "$dir" && -d "$dir" ]] ||
    fail "no servers for $(state_file): run '$0 start' first"
  printf '%s\n' "$dir"
}

# ---------------------------------------------------------------------------------------------
# Tools

pg_bindir() {
  if [[ -n "${XATM_PG_BINDIR:-}" ]]; then
    [[ -x "$XATM_PG_BINDIR/initdb" ]] || fail "XATM_PG_BINDIR=$XATM_PG_BINDIR holds no initdb"
    printf '%s\n' "$XATM_PG_BINDIR"
  elif [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
    printf '%s\n' /usr/lib/postgresql/15/bin
  else
    fail "PostgreSQL 15 server binaries not found (Debian: apt-get install postgresql-15)"
  fi
}

require_tool() {
  command -v "$1" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 ||
    fail "$1 not found (Debian: apt-get install $2)"
}

mariadbd_bin() {
  local candidate
  for candidate in "$(command -v mariadbd 2>/dev/null || true)" /usr/sbin/mariadbd; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  fail "mariadbd not found (Debian: apt-get install mariadb-server)"
}

# The user the servers run as: PostgreSQL refuses root, MariaDB accepts --user=root.
pg_os_user() {
  if [[ $(id -u) -eq 0 ]]; then
    printf '%s\n' "${XATM_SERVERS_PG_USER:-nobody}"
  else
    id -un
  fi
}

# Runs a PostgreSQL server program as the PostgreSQL OS user (setpriv: no PAM, no session).
as_pg_user() {
  if [[ $(id -u) -eq 0 ]]; then
    local user
    user=$(pg_os_user)
    setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups -- "$@"
  else
    "$@"
  fi
}

# True when pid runs and its command line mentions our dir (never signal a stranger's process).
pid_is_ours() {
  local pid=$1 dir=$2
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  local state
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir"
}

wait_gone() {
  local pid=$1 dir=$2 seconds=$3 i
  for ((i = 0; i < seconds * 10; i++)); do
    pid_is_ours "$pid" "$dir" || return 0
    sleep 0.1
  done
  return 1
}

log_tail() {
  local file=$1
  if [[ -f "$file" ]]; then
    printf '%s\n' "---- last lines of $file ----" >&2
    tail -n 30 "$file" >&2 || true
    printf '%s\n' "----" >&2
  fi
}

# Values of libpq's keyword form: single quotes, with \' and \\ escaped inside.
conninfo_quote() {
  local value=$1
  value=${value//\\/\\\\}
  value=${value//\'/\\\'}
  printf "'%s'" "$value"
}

# ---------------------------------------------------------------------------------------------
# TCP ports and TLS

# A TCP port nothing listens on now, other than $2 (several engineers' servers share a machine:
# a fixed port would collide). A race with another program remains, and fails the start loudly.
free_port() {
  local other=${1:-0} port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 40000))
    [[ $port -ne $other ]] || continue
    if ! ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  fail "no free TCP port found"
}

# The port each server got at start (PostgreSQL's is also its unix socket's number).
pg_port() { sed -n 's/^pg=//p' "$1/ports"; }
mysql_port() { sed -n 's/^mysql=//p' "$1/ports"; }

# A throwaway CA (tls/ca.pem), a server certificate it signed for localhost and 127.0.0.1
# (tls/server.pem, tls/server.key), and a second CA that signed nothing (tls/other-ca.pem), for
# the tests of a wrong CA. EC keys: quick to make.
tls_init() {
  local dir=$1 tls=$1/tls
  mkdir -p "$tls"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=xatm test CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=xatm other CA" -keyout "$tls/other-ca.key" -out "$tls/other-ca.pem" &&
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
        -keyout "$tls/server.key" -out "$tls/server.csr" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/server.ext" &&
      openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 2 -extfile "$tls/server.ext" -out "$tls/server.pem"
  } >"$dir/tls.log" 2>&1 || {
    log_tail "$dir/tls.log"
    fail "could not make the test certificates"
  }
  chmod 0600 "$tls/server.key"
  # PostgreSQL refuses a key that is not its own (or root's with 0640): give it a copy.
  cp "$tls/server.key" "$tls/pg-server.key"
  chmod 0600 "$tls/pg-server.key"
  if [[ $(id -u) -eq 0 ]]; then
    local user
    user=$(pg_os_user)
    chown "$user:$(id -gn "$user")" "$tls/pg-server.key"
    chmod 0755 "$tls"
    chmod 0644 "$tls/server.pem" "$tls/ca.pem" "$tls/other-ca.pem"
  fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_alive() {
  local dir=$1
  "$(pg_bindir)/pg_isready" -q -h "$dir" -p "$(pg_port "$dir")" -t 3 >/dev/null 2>&1
}

pg_psql() {
  local dir=$1
  shift
  "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$(pg_port "$dir")" -U postgres -d postgres "$@"
}

pg_init() {
  local dir=$1 bindir
  bindir=$(pg_bindir)
  mkdir -p "$dir/pg-data"
  chmod 0700 "$dir/pg-data"
  if [[ $(id -u) -eq 0 ]]; then
    local user
    user=$(pg_os_user)
    id -u "$user" >/dev/null 2>&1 || fail "user '$user' does not exist (PostgreSQL cannot run as root)"
    # postgres writes its socket and log into the temp dir: hand both dirs to its user.
    chown "$user:$(id -gn "$user")" "$dir" "$dir/pg-data"
    chmod 0711 "$dir"
  fi
  # --no-sync: only initdb's own files skip fsync; the server keeps fsync on.
  if ! (cd "$dir" && as_pg_user "$bindir/initdb" -D "$dir/pg-data" -U postgres --auth-local=trust \
    --auth-host=reject -E UTF8 --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1); then
    log_tail "$dir/initdb.log"
    fail "PostgreSQL initdb failed"
  fi
  cat >>"$dir/pg-data/postgresql.conf" <<EOF

# xatm test server: a unix socket in the temp dir, and TLS on 127.0.0.1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
port = $(pg_port "$dir")
ssl = on
ssl_cert_file = '$dir/tls/server.pem'
ssl_key_file = '$dir/tls/pg-server.key'
max_prepared_transactions = 64
max_connections = 100
fsync = on
EOF
  # First match wins: xatm_pw must authenticate, every other local role is trusted; on TCP only
  # TLS sessions of xatm (trusted) and xatm_pw (password) get in, initdb's `host ... reject`
  # lines refuse the rest. Rewritten in place, so the file keeps its owner (the PostgreSQL user).
  local hba
  hba=$(cat "$dir/pg-data/pg_hba.conf")
  printf '%s\n' 'local all xatm_pw scram-sha-256' 'hostssl all xatm 127.0.0.1/32 trust' \
    'hostssl all xatm_pw 127.0.0.1/32 scram-sha-256' "$hba" >"$dir/pg-data/pg_hba.conf"
}

# pg_ctl start of the cluster in $dir/NAME, logging to $dir/NAME.log; WHAT names it in a failure
# (with the tails of its logs) and ALIVE is the function that checks it answers.
pg_ctl_start() {
  local dir=$1 name=$2 what=$3 alive=$4
  if ! (cd "$dir" && as_pg_user "$(pg_bindir)/pg_ctl" -D "$dir/$name" -l "$dir/$name.log" -w \
    -t "$start_timeout" start >/dev/null 2>"$dir/$name.pg_ctl.err"); then
    log_tail "$dir/$name.pg_ctl.err"
    log_tail "$dir/$name.log"
    fail "$what did not start"
  fi
  "$alive" "$dir" || {
    log_tail "$dir/$name.log"
    fail "$what started but does not answer"
  }
}

pg_start() {
  local dir=$1
  say "starting PostgreSQL in $dir"
  pg_ctl_start "$dir" pg-data PostgreSQL pg_alive
}

pg_stop() {
  local dir=$1 mode=$2 data=${3:-pg-data}
  local pidfile="$dir/$data/postmaster.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid
  pid=$(head -n 1 "$pidfile")
  if ! pid_is_ours "$pid" "$dir"; then
    return 0
  fi
  say "stopping PostgreSQL $data ($mode)"
  if ! (cd "$dir" && as_pg_user "$(pg_bindir)/pg_ctl" -D "$dir/$data" -m "$mode" -w -t 30 stop \
    >/dev/null 2>&1); then
    say "pg_ctl stop failed: killing postmaster $pid"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait_gone "$pid" "$dir" 30 || fail "PostgreSQL (pid $pid) did not stop"
}

pg_setup() {
  local dir=$1 sql_password=${pg_password//\'/\'\'}
  pg_psql "$dir" -c "CREATE ROLE xatm SUPERUSER LOGIN" \
    -c "CREATE DATABASE xatm_test OWNER xatm" \
    -c "CREATE DATABASE xatm_test2 OWNER xatm" \
    -c "CREATE ROLE xatm_pw LOGIN PASSWORD '$sql_password'" >/dev/null ||
    fail "could not create the xatm roles and databases in PostgreSQL"
  pg_psql "$dir" -d xatm_test -c "GRANT CREATE ON SCHEMA public TO xatm_pw" >/dev/null ||
    fail "could not let xatm_pw create tables in xatm_test"
}

# A physical standby of the primary (hot standby, read-only): a base backup with -R (standby.signal
# and primary_conninfo), streaming from the primary. It listens on a unix socket in $dir/standby
# only (same port number, another directory: nothing to collide with). A standby needs
# max_prepared_transactions and max_connections >= the primary's: the copied postgresql.conf has
# the primary's. initdb's pg_hba.conf trusts local replication connections.
pg_standby_alive() {
  local dir=$1
  "$(pg_bindir)/pg_isready" -q -h "$dir/standby" -p "$(pg_port "$dir")" -t 3 >/dev/null 2>&1
}

pg_standby_start() {
  local dir=$1 bindir
  bindir=$(pg_bindir)
  if pg_standby_alive "$dir"; then
    say "PostgreSQL standby already running"
    return 0
  fi
  pg_stop "$dir" fast pg-standby
  rm -rf -- "$dir/pg-standby" "$dir/standby"
  say "starting a PostgreSQL standby in $dir/pg-standby"
  if ! (cd "$dir" && as_pg_user mkdir -m 0700 "$dir/standby" && as_pg_user "$bindir/pg_basebackup" -h "$dir" \
    -p "$(pg_port "$dir")" -U postgres -D "$dir/pg-standby" -R -X stream -c fast --no-sync \
    >"$dir/pg-basebackup.log" 2>&1); then
    log_tail "$dir/pg-basebackup.log"
    fail "pg_basebackup of the primary failed"
  fi
  cat >>"$dir/pg-standby/postgresql.conf" <<EOF

# xatm test standby: unix socket only, read-only queries while it replays the primary's WAL
listen_addresses = ''
unix_socket_directories = '$dir/standby'
hot_standby = on
EOF
  pg_ctl_start "$dir" pg-standby "the PostgreSQL standby" pg_standby_alive
}

pg_standby_stop() {
  local dir=$1
  pg_stop "$dir" fast pg-standby
  rm -rf -- "$dir/pg-standby" "$dir/standby"
}

# ---------------------------------------------------------------------------------------------
# MariaDB

mysql_user_option() {
  if [[ $(id -u) -eq 0 ]]; then printf '%s\n' root; else id -un; fi
}

mysql_alive() {
  local dir=$1
  [[ -S "$dir/mysql.sock" ]] || return 1
  mariadb-admin --no-defaults --socket="$dir/mysql.sock" --user=root --connect-timeout=2 \
    ping >/dev/null 2>&1
}

mysql_pid() {
  local dir=$1
  if [[ -f "$dir/mysql.pid" ]]; then head -n 1 "$dir/mysql.pid"; fi
}

mysql_init() {
  local dir=$1
  require_tool mariadb-install-db mariadb-server
  if ! mariadb-install-db --no-defaults --datadir="$dir/mysql-data" --user="$(mysql_user_option)" \
    --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
    >"$dir/mysql-install.log" 2>&1; then
    log_tail "$dir/mysql-install.log"
    fail "mariadb-install-db failed"
  fi
}

mysql_start() {
  local dir=$1 mariadbd
  mariadbd=$(mariadbd_bin)
  require_tool mariadb-admin mariadb-client
  say "starting MariaDB in $dir"
  # A pid file left by kill -9 would make the wait below give up at once.
  rm -f -- "$dir/mysql.pid"
  # setsid + every stream redirected: the server must outlive this script and must not hold the
  # caller's pipes open (CTest waits for them to close).
  setsid "$mariadbd" --no-defaults --datadir="$dir/mysql-data" --socket="$dir/mysql.sock" \
    --bind-address=127.0.0.1 --port="$(mysql_port "$dir")" --ssl-ca="$dir/tls/ca.pem" \
    --ssl-cert="$dir/tls/server.pem" --ssl-key="$dir/tls/server.key" --pid-file="$dir/mysql.pid" --log-error="$dir/mysql.err" \
    --innodb-buffer-pool-size=64M --user="$(mysql_user_option)" \
    </dev/null >>"$dir/mysql.out" 2>&1 &
  local launcher=$! launcher_done=0 i pid why="did not answer on $dir/mysql.sock within ${start_timeout}s"
  for ((i = 0; i < start_timeout * 5; i++)); do
    if mysql_alive "$dir"; then
      return 0
    fi
    # The launcher is mariadbd itself, unless setsid had to fork (then it exits 0 at once).
    if [[ $launcher_done -eq 0 ]] && ! kill -0 "$launcher" 2>/dev/null; then
      launcher_done=1
      if ! wait "$launcher"; then
        why="exited at startup"
        break
      fi
    fi
    pid=$(mysql_pid "$dir")
    if [[ -n "$pid" ]] && ! pid_is_ours "$pid" "$dir"; then
      why="exited at startup"
      break
    fi
    sleep 0.2
  done
  if pid_is_ours "$launcher" "$dir"; then
    kill -KILL "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
  fi
  log_tail "$dir/mysql.out"
  log_tail "$dir/mysql.err"
  fail "MariaDB $why"
}

mysql_stop() {
  local dir=$1 pid
  pid=$(mysql_pid "$dir")
  [[ -n "$pid" ]] || return 0
  pid_is_ours "$pid" "$dir" || return 0
  say "stopping MariaDB"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$dir" 60; then
    say "MariaDB did not stop within 60s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" "$dir" 30 || fail "MariaDB (pid $pid) did not die"
  fi
}

mysql_kill() {
  local dir=$1 pid
  pid=$(mysql_pid "$dir")
  pid_is_ours "$pid" "$dir" || fail "MariaDB is not running in $dir"
  say "killing MariaDB (kill -9 $pid)"
  kill -KILL "$pid"
  wait_gone "$pid" "$dir" 30 || fail "MariaDB (pid $pid) is still there after kill -9"
}

mysql_setup() {
  local dir=$1 sql_password=${mysql_password//\'/\'\'}
  mariadb --no-defaults --socket="$dir/mysql.sock" --user=root --batch <<EOF ||
CREATE DATABASE xatm_test;
CREATE DATABASE xatm_test2;
CREATE USER 'xatm'@'localhost' IDENTIFIED BY '$sql_password';
GRANT ALL PRIVILEGES ON *.* TO 'xatm'@'localhost' WITH GRANT OPTION;
CREATE USER 'xatm_tls'@'%' IDENTIFIED BY '$mysql_tls_password' REQUIRE SSL;
GRANT ALL PRIVILEGES ON *.* TO 'xatm_tls'@'%';
EOF
    fail "could not create the xatm user and database in MariaDB"
}

# ---------------------------------------------------------------------------------------------
# Subcommands

write_env() {
  local dir=$1
  {
    printf 'XATM_TEST_DIR=%s\n' "$dir"
    local pg_port
    pg_port=$(pg_port "$dir")
    printf 'XATM_TEST_PG=host=%s port=%s dbname=xatm_test user=xatm\n' "$dir" "$pg_port"
    printf 'XATM_TEST_PG2=host=%s port=%s dbname=xatm_test2 user=xatm\n' "$dir" "$pg_port"
    # Answers only between start-pg-standby and stop-pg-standby.
    printf 'XATM_TEST_PG_STANDBY=host=%s/standby port=%s dbname=xatm_test user=xatm\n' "$dir" "$pg_port"
    printf 'XATM_TEST_PG_PW=host=%s port=%s dbname=xatm_test user=xatm_pw password=%s\n' "$dir" "$pg_port" \
      "$(conninfo_quote "$pg_password")"
    printf 'XATM_TEST_MYSQL=unix_socket=%s/mysql.sock user=xatm password=%s dbname=xatm_test\n' \
      "$dir" "$(conninfo_quote "$mysql_password")"
    printf 'XATM_TEST_MYSQL2=unix_socket=%s/mysql.sock user=xatm password=%s dbname=xatm_test2\n' \
      "$dir" "$(conninfo_quote "$mysql_password")"
    printf 'XATM_TEST_MYSQL_ROOT=unix_socket=%s/mysql.sock user=root dbname=xatm_test\n' "$dir"
    # TLS on TCP: the CA that signed both servers' certificate, another CA, the ports.
    printf 'XATM_TEST_TLS_CA=%s/tls/ca.pem\n' "$dir"
    printf 'XATM_TEST_TLS_OTHER_CA=%s/tls/other-ca.pem\n' "$dir"
    printf 'XATM_TEST_TCP_HOST=127.0.0.1\n'
    printf 'XATM_TEST_PG_TCP_PORT=%s\n' "$pg_port"
    printf 'XATM_TEST_MYSQL_TCP_PORT=%s\n' "$(mysql_port "$dir")"
  } >"$dir/servers.env.tmp"
  mv "$dir/servers.env.tmp" "$dir/servers.env"
}

cmd_start() {
  local state dir
  state=$(state_file)
  dir=$(current_dir)
  if [[ -n "$dir" ]]; then
    if [[ -f "$dir/servers.env" ]] && pg_alive "$dir" && mysql_alive "$dir"; then
      say "already running in $dir"
      return 0
    fi
    say "cleaning up the leftovers of an earlier start in ${dir}"
    cmd_stop
  fi
  # Check the tools before creating anything.
  pg_bindir >/dev/null
  mariadbd_bin >/dev/null
  require_tool mariadb-install-db mariadb-server
  require_tool mariadb-admin mariadb-client
  require_tool mariadb mariadb-client
  require_tool setpriv util-linux
  require_tool openssl openssl
  require_tool ss iproute2

  local started=$SECONDS
  mkdir -p "$(dirname "$state")"
  dir=$(mktemp -d /tmp/xatm-servers.XXXXXX)
  # Record the dir first: `stop` cleans up whatever a failed start leaves behind.
  printf '%s\n' "$dir" >"$state.tmp"
  mv "$state.tmp" "$state"
  local pg_tcp_port
  pg_tcp_port=$(free_port)
  printf 'pg=%s\nmysql=%s\n' "$pg_tcp_port" "$(free_port "$pg_tcp_port")" >"$dir/ports"
  tls_init "$dir"

  # initdb and mariadb-install-db are independent: run them side by side.
  pg_init "$dir" &
  local pg_init_pid=$!
  local mysql_ok=0 pg_ok=0
  (mysql_init "$dir") || mysql_ok=$?
  wait "$pg_init_pid" || pg_ok=$?
  [[ $pg_ok -eq 0 ]] || fail "PostgreSQL could not be set up in $dir (run '$0 stop' to clean up)"
  [[ $mysql_ok -eq 0 ]] || fail "MariaDB could not be set up in $dir (run '$0 stop' to clean up)"

  pg_start "$dir"
  mysql_start "$dir"
  pg_setup "$dir"
  mysql_setup "$dir"
  write_env "$dir"
  say "PostgreSQL and MariaDB ready in $dir ($((SECONDS - started))s)"
}

cmd_stop() {
  local state dir
  state=$(state_file)
  dir=$(current_dir)
  if [[ -n "$dir" && -d "$dir" ]]; then
    # Either stop failing must not keep the other server running or the dir in place.
    local rc=0
    (pg_stop "$dir" fast pg-standby) || rc=1
    (pg_stop "$dir" fast) || rc=1
    (mysql_stop "$dir") || rc=1
    if [[ $rc -ne 0 ]]; then
      say "warning: a server did not stop cleanly"
    fi
    rm -rf -- "$dir"
    say "removed $dir"
  fi
  rm -f -- "$state" "$state.tmp"
}

cmd_status() {
  local dir rc=0
  dir=$(current_dir)
  if [[ -z "$dir" || ! -d "$dir" ]]; then
    say "not started (state file: $(state_file))"
    return 1
  fi
  if pg_alive "$dir"; then say "PostgreSQL: running ($dir)"; else
    say "PostgreSQL: stopped"
    rc=1
  fi
  if mysql_alive "$dir"; then say "MariaDB: running ($dir/mysql.sock)"; else
    say "MariaDB: stopped"
    rc=1
  fi
  return "$rc"
}

cmd_env() {
  local dir
  dir=$(require_dir)
  [[ -f "$dir/servers.env" ]] || fail "$dir/servers.env is missing: the servers did not finish starting"
  cat "$dir/servers.env"
}

main() {
  [[ $# -eq 1 ]] || usage
  local dir
  case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    kill-mysql)
      dir=$(require_dir)
      mysql_kill "$dir"
      ;;
    start-mysql)
      dir=$(require_dir)
      if mysql_alive "$dir"; then say "MariaDB already running"; else mysql_start "$dir"; fi
      ;;
    restart-mysql)
      dir=$(require_dir)
      mysql_stop "$dir"
      mysql_start "$dir"
      ;;
    stop-pg-immediate)
      dir=$(require_dir)
      pg_stop "$dir" immediate
      ;;
    start-pg)
      dir=$(require_dir)
      if pg_alive "$dir"; then say "PostgreSQL already running"; else pg_start "$dir"; fi
      ;;
    restart-pg)
      dir=$(require_dir)
      pg_stop "$dir" fast
      pg_start "$dir"
      ;;
    start-pg-standby)
      dir=$(require_dir)
      pg_standby_start "$dir"
      ;;
    stop-pg-standby)
      dir=$(require_dir)
      pg_standby_stop "$dir"
      ;;
    -h | --help | help) usage ;;
    *)
      printf 'servers: unknown subcommand: %s\n' "$1" >&2
      usage
      ;;
  esac
}

main "$@"
