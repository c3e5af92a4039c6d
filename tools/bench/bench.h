// xatm-bench's shared vocabulary: modes, workloads, settings and what one measurement holds.
// Plain value types; the runner fills them from its client threads, the report reads them on
// the main thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace xatm::bench {

// How one global unit of work reaches the two databases (docs/design.md section 11).
enum class mode : std::uint8_t {
  local,                // two native local transactions one after the other: not atomic
  raw_xa,               // the XA verbs sent by hand, as the engine sends them: no TM, no decision log
  xa,                   // xatm's transaction_manager: two-phase commit with its SQLite decision log
  xa_early,             // the same with tm_options::early_acknowledgement ("xa-early")
  three_phase,          // xatm's three-phase mode ("3pc")
  commit_marker,        // xatm's commit-marker protocol ("marker"): the decision row in a branch
  commit_marker_early,  // the same with tm_options::early_acknowledgement ("marker-early")
  tcc,                  // side a an XA branch, side b a TCC branch of an in-process participant
                        // with its barrier on side b's database ("tcc"; bench/tcc_participant.h)
};
// "local", "raw-xa", "xa", "xa-early", "3pc", "marker", "marker-early", "tcc"
const char* mode_name(mode m) noexcept;
std::optional<mode> parse_mode(std::string_view name);

enum class workload_kind : std::uint8_t {
  transfer,    // debit an account in PostgreSQL, credit one in MariaDB, a ledger row in each
  read_write,  // read stock in MariaDB, write an order in PostgreSQL: the read-only optimization
  pg_pg,       // the transfer between two PostgreSQL databases of one server
};
const char* workload_name(workload_kind kind) noexcept;  // "transfer", "read-write", "pg-pg"
std::optional<workload_kind> parse_workload(std::string_view name);
// "1 client", "16 clients".
std::string clients_text(int clients);

struct settings {
  std::string pg;     // libpq conninfo; empty: start throwaway servers
  std::string pg2;    // the pg-pg workload's second database (derived from pg, see xatm_bench.cpp)
  std::string mysql;  // MariaDB conninfo
  std::vector<workload_kind> workloads{workload_kind::transfer, workload_kind::read_write, workload_kind::pg_pg};
  std::vector<mode> modes{mode::local,
                          mode::raw_xa,
                          mode::xa,
                          mode::xa_early,
                          mode::three_phase,
                          mode::commit_marker,
                          mode::commit_marker_early,
                          mode::tcc};
  std::vector<int> clients{1, 4, 16};
  double seconds = 5;  // measured time per mode and clients value
  double warmup = 1;   // unmeasured time per mode before each clients value's rounds
  int rounds = 0;      // derived from seconds: the measured time is split into this many rounds
  int accounts = 10000;
  std::string log_dir;  // where xatm's decision log lives; empty: a private temp dir
  std::string json_path;
  std::string csv_path;
  std::string chart_path;
  // tm_options::allow_unsafe_durability for every TM of the run (--allow-unsafe-durability): off,
  // the servers must pass xatm's durability check; the header line says which.
  bool allow_unsafe_durability = false;
  std::string decision_rm;  // the commit-marker modes' tm_options::decision_rm (--decision-rm)
};

// One cell of the tables: a workload in one mode with one number of clients.
struct measurement {
  workload_kind workload = workload_kind::transfer;
  mode m = mode::local;
  int clients = 0;
  std::uint64_t committed = 0;  // acknowledged commits in measured rounds
  std::uint64_t failed = 0;     // transactions that did not commit (rolled back, errors)
  double seconds = 0;           // wall time of the measured rounds
  // This process's CPU time (every thread: clients, drivers, the TM's log writer) during those
  // rounds, in user space and in the kernel (sockets, context switches, the log's fsync).
  double cpu_user_seconds = 0;
  double cpu_system_seconds = 0;
  std::vector<std::uint32_t> latencies_us;  // one per committed transaction, sorted by finish()
  std::uint64_t tm_committed = 0;           // TM modes: tm_statistics deltas over the rounds
  std::uint64_t log_batches = 0;
  std::uint64_t decisions_logged = 0;

  void finish();  // sorts the latencies
  double throughput() const { return seconds > 0 ? static_cast<double>(committed) / seconds : 0; }
  double percentile_ms(double fraction) const;
  // Decision-log fsyncs (SQLite transactions) per committed transaction; nullopt for modes
  // without a log.
  std::optional<double> log_fsyncs_per_tx() const;
  double user_us_per_tx() const { return per_tx_us(cpu_user_seconds); }
  double system_us_per_tx() const { return per_tx_us(cpu_system_seconds); }

 private:
  double per_tx_us(double cpu) const { return committed > 0 ? cpu * 1e6 / static_cast<double>(committed) : 0; }
};

// What the checks after a clients value found.
struct verification {
  workload_kind workload = workload_kind::transfer;
  int clients = 0;
  bool ok = true;
  std::string detail;  // what was compared, or what was wrong
};

struct run_result {
  settings config;
  // One small write + fsync in the log dir: the median of samples taken before every run and at
  // the end (the device is shared: its speed drifts), and the lowest and highest batch median.
  double log_fsync_ms = 0;
  double log_fsync_low_ms = 0;
  double log_fsync_high_ms = 0;
  std::size_t log_fsync_samples = 0;
  // Median round trip of `SELECT 1` through xatm's exec(), per RM name ("pg", "maria"): the R of
  // docs/design.md section 11's bounds.
  std::map<std::string, double> round_trip_ms;
  std::vector<measurement> cells;
  std::vector<verification> checks;
  std::vector<std::string> notes;  // modes not available, half-committed local transfers, ...
  std::string started_utc;

  const measurement* find(workload_kind w, mode m, int clients) const;
};

}  // namespace xatm::bench
