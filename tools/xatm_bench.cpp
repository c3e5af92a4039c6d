// xatm-bench: xatm's two-phase commit against native local transactions and against the same XA
// statements sent by hand (docs/design.md section 11). For every workload and number of clients it
// runs the modes interleaved in short rounds, prints a table of throughput, latency percentiles
// and ratios, checks that no money was lost, and writes JSON, CSV and an SVG chart on request.
// The machinery lives in tools/bench/; docs/performance.md explains the numbers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "bench/report.h"
#include "bench/runner.h"
#include "testing/throwaway_servers.h"
#include "bench/tcc_participant.h"
#include "bench/workload.h"
#include "console_log.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"
#include "xatm/version.h"

namespace {

using namespace xatm::bench;

// The ranges of the numbers (absurd values are typos, refused before anything starts).
constexpr double max_clients = 1024;      // each client is a thread with its own connections
constexpr double max_seconds = 86400;     // --seconds, --warmup: a day
constexpr double max_accounts = 10000000;     // rows per database the setup inserts

constexpr const char* usage_text = R"(usage: xatm-bench [options]
       xatm-bench --version | --help

Runs each workload with each number of clients in every mode, the modes interleaved in short
rounds so that they see the same machine, then prints a table per workload and checks that the
databases hold exactly what was acknowledged (exit 1 if not).

  --pg CONNINFO        PostgreSQL (libpq keywords). The pg-pg workload uses the same server and
                       the database named like CONNINFO's dbname with "2" appended.
  --mysql CONNINFO     MariaDB (host/port/user/password/dbname/unix_socket keywords).
                       With neither --pg nor --mysql, throwaway servers are started with
                       lib/testing/servers.sh and stopped at exit.
  --workload LIST      transfer,read-write,pg-pg (default: all three)
  --modes LIST         local,raw-xa,xa,xa-early,3pc,marker,marker-early,tcc (default: all eight)
  --decision-rm NAME   the commit-marker modes' decision RM (pg, pg2 or maria; default: the
                       first enlisted branch's, the workload's first database)
  --clients LIST       numbers of concurrent clients, each one thread with its own connections
                       (default: 1,4,16; each 1 to 1024)
  --seconds N          measured seconds per mode and clients value (default 5; 0.1 to 86400),
                       split into rounds of about one second (at most 10 rounds)
  --warmup N           unmeasured seconds per mode before each clients value (default 1; 0 to
                       86400)
  --accounts N         accounts (transfer, pg-pg) or items (read-write) per database (default
                       10000; 1 to 10000000)
  --log-dir DIR        directory of xatm's decision log (mode 0700); its device's fsync is
                       measured and printed (default: a private temp dir, removed at exit)
  --json FILE          write the results, targets and checks as JSON
  --csv FILE           write the results as CSV
  --chart FILE         write the SVG chart there (default: the --json file with .svg, else
                       ./bench.svg)
  --allow-unsafe-durability
                       let xatm use servers that fail its durability check (fsync = off,
                       innodb_flush_log_at_trx_commit != 1, ...); default: refused. The output's
                       header line says which was used: numbers from unsafe servers are not
                       comparable with safe ones
  --version            print "xatm-bench <version>" and exit
  --help               this text

Modes: local = two native local transactions one after the other (not atomic); raw-xa = the XA
verbs through xatm's resource_manager exactly as the engine sends them, with no transaction
manager and no decision log (the databases' floor); xa = xatm's two-phase commit; xa-early = the
same with early acknowledgement (commit returns once the decision is durable); 3pc = the
three-phase mode; marker = the commit-marker protocol (the decision is a row in one branch's own
one-phase commit, nothing in the TM's log); marker-early = the same with early acknowledgement;
tcc = side a an XA branch, side b a TCC branch: an in-process participant whose try writes its
barrier row and whose confirm runs side b's statements with the barrier (no network).
Each TM mode has its own TM and decision log in the log dir.
Exit status: 0 ok, 1 an invariant check failed, 2 usage error, 3 the bench could not run,
130 interrupted (SIGINT/SIGTERM: the partial results are still printed and written).
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "xatm-bench: " << message << "\n(see xatm-bench --help)\n";
  std::exit(2);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

// A number of `option` from `min` to `max` (finite: nan and inf are refused), a whole one when
// `whole`. The text is a number the user typed, never a secret: it may be echoed.
double parse_number(const std::string& option, const std::string& text, double min, double max, bool whole = false) {
  try {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size() && std::isfinite(value) && value >= min && value <= max &&
        (!whole || value == std::floor(value))) {
      return value;
    }
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): reported below
  }
  std::ostringstream range;
  range << std::setprecision(10) << option << " needs " << (whole ? "a whole number" : "a number") << " from " << min << " to " << max
        << ", not '" << text << "'";
  usage_error(range.str());
}

// The command line, parsed by CLI11 (docs/performance.md lists the options). Numbers are range-checked
// here, with messages that name the option; a connection string is never echoed.
settings parse_options(int argc, char** argv) {
  settings config;
  CLI::App app{"xatm-bench", "xatm-bench"};
  app.set_help_flag();  // usage_text is the help
  bool help = false;
  bool version = false;
  std::string workloads;
  std::string modes;
  std::string clients;
  std::string seconds;
  std::string warmup;
  std::string accounts;
  app.add_flag("-h,--help", help);
  app.add_flag("--version", version);
  app.add_option("--pg", config.pg);
  app.add_option("--mysql", config.mysql);
  app.add_option("--workload,--workloads", workloads);
  app.add_option("--modes", modes);
  app.add_option("--decision-rm", config.decision_rm);
  app.add_option("--clients", clients);
  app.add_option("--seconds", seconds);
  app.add_option("--warmup", warmup);
  app.add_option("--accounts", accounts);
  app.add_option("--log-dir", config.log_dir);
  app.add_option("--json", config.json_path);
  app.add_option("--csv", config.csv_path);
  app.add_option("--chart", config.chart_path);
  app.add_flag("--allow-unsafe-durability", config.allow_unsafe_durability);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError&) {
    usage_error("an argument was not understood (not shown: it may hold a password)");
  } catch (const CLI::ParseError& e) {
    usage_error(e.what());  // CLI11 names the option, never a value here (every option is text)
  }
  if (help) {
    std::cout << usage_text;
    std::exit(0);
  }
  if (version) {
    std::cout << "xatm-bench " << XATM_VERSION_STRING << "\n";
    std::exit(0);
  }
  auto given = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (given("--workload")) {
    config.workloads.clear();
    for (const auto& name : split_list(workloads)) {
      auto kind = parse_workload(name);
      if (!kind) usage_error("unknown workload '" + name + "' (transfer, read-write, pg-pg)");
      config.workloads.push_back(*kind);
    }
  }
  if (given("--modes")) {
    config.modes.clear();
    for (const auto& name : split_list(modes)) {
      auto m = parse_mode(name);
      if (!m) usage_error("unknown mode '" + name + "' (local, raw-xa, xa, xa-early, 3pc, marker, marker-early, tcc)");
      if (std::find(config.modes.begin(), config.modes.end(), *m) == config.modes.end()) config.modes.push_back(*m);
    }
  }
  if (given("--clients")) {
    config.clients.clear();
    for (const auto& text : split_list(clients)) {
      config.clients.push_back(static_cast<int>(parse_number("--clients", text, 1, max_clients, true)));
    }
  }
  if (given("--seconds")) config.seconds = parse_number("--seconds", seconds, 0.1, max_seconds);
  if (given("--warmup")) config.warmup = parse_number("--warmup", warmup, 0, max_seconds);
  if (given("--accounts")) config.accounts = static_cast<int>(parse_number("--accounts", accounts, 1, max_accounts, true));
  if (given("--decision-rm") && config.decision_rm != "pg" && config.decision_rm != "pg2" &&
      config.decision_rm != "maria") {
    usage_error("--decision-rm must be pg, pg2 or maria");
  }
  if (config.workloads.empty()) usage_error("--workload names no workload");
  if (config.modes.empty()) usage_error("--modes names no mode");
  if (config.clients.empty()) usage_error("--clients names no number");
  // Rounds of about a second: short enough to interleave, long enough to amortise the switch.
  config.rounds = std::clamp(static_cast<int>(config.seconds + 0.5), 1, 10);
  if (config.chart_path.empty()) {
    config.chart_path = config.json_path.empty()
                            ? "bench.svg"
                            : std::filesystem::path(config.json_path).replace_extension(".svg").string();
  }
  return config;
}

// The pg-pg workload's second database: the same settings with "2" appended to dbname.
std::string second_database(const std::string& pg) {
  auto parsed = xatm::connection_settings::parse(pg);
  if (!parsed) usage_error("--pg: " + parsed.error().message);
  auto settings = parsed.value();
  settings.set("dbname", settings.get("dbname").value_or("postgres") + "2");
  return settings.to_conninfo();
}

// A private directory for the decision log; removed at exit when the bench made it.
struct log_directory {
  std::filesystem::path path;
  bool owned = false;

  explicit log_directory(const std::string& requested) {
    if (requested.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/xatm-bench-log.XXXXXX";
      if (::mkdtemp(pattern.data()) == nullptr) {
        throw std::runtime_error("cannot create a temp dir for the decision log: " + std::string(std::strerror(errno)));
      }
      path = pattern;
      owned = true;
      return;
    }
    path = requested;
    if (!std::filesystem::exists(path)) {
      std::filesystem::create_directories(path);
      std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    }
  }
  ~log_directory() {
    std::error_code ignored;  // best effort; only a dir this process created
    if (owned) std::filesystem::remove_all(path, ignored);
  }
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

// Times one forced write on the log's device `samples` times: 4 KiB pwrite + fsync.
std::vector<double> sample_fsync_ms(const std::filesystem::path& dir, int samples) {
  const std::string probe = (dir / "fsync-probe").string();
  const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + probe + ": " + std::strerror(errno));
  std::vector<char> block(4096, 'x');
  std::vector<double> times;
  bool failed = false;
  // Preallocate so that each sample is an overwrite, as most WAL writes are.
  for (int i = 0; i < 16 && !failed; ++i) {
    failed = ::pwrite(fd, block.data(), block.size(), static_cast<off_t>(i) * 4096) != 4096;
  }
  failed = failed || ::fsync(fd) != 0;
  for (int i = 0; i < samples && !failed; ++i) {
    const auto start = std::chrono::steady_clock::now();
    failed = ::pwrite(fd, block.data(), block.size(), static_cast<off_t>(i % 16) * 4096) != 4096 || ::fsync(fd) != 0;
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  ::close(fd);
  ::unlink(probe.c_str());
  if (failed) throw std::runtime_error("write+fsync in " + dir.string() + " failed: " + std::strerror(errno));
  return times;
}

// Every batch of fsync samples of the run, for the median and the drift.
struct fsync_samples {
  std::vector<double> all;
  std::vector<double> batch_medians;

  double take(const std::filesystem::path& dir, int samples) {
    auto batch = sample_fsync_ms(dir, samples);
    all.insert(all.end(), batch.begin(), batch.end());
    batch_medians.push_back(median(batch));
    return batch_medians.back();
  }
  void store(run_result& result) const {
    result.log_fsync_ms = median(all);
    result.log_fsync_samples = all.size();
    result.log_fsync_low_ms = *std::min_element(batch_medians.begin(), batch_medians.end());
    result.log_fsync_high_ms = *std::max_element(batch_medians.begin(), batch_medians.end());
  }
};

// The median time of `SELECT 1` through exec(): one round trip plus xatm's adapter.
double measure_round_trip_ms(xatm::connection& rm) {
  std::vector<double> times;
  for (int i = 0; i < 200; ++i) {
    const auto start = std::chrono::steady_clock::now();
    rm.exec("SELECT 1").value();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  ::gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &parts);
  return text;
}

std::string load_average() {
  double load[3] = {0, 0, 0};
  if (::getloadavg(load, 3) != 3) return "unknown";
  std::ostringstream out;
  out.precision(2);
  out << std::fixed << load[0] << " " << load[1] << " " << load[2];
  return out.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path);
  std::cerr << "xatm-bench: wrote " << path << "\n";
}

extern "C" void on_signal(int) { stop_requested.store(true); }

int run(settings config) {
  run_result result;
  result.started_utc = utc_now();
  result.notes.push_back("machine: " + std::to_string(std::thread::hardware_concurrency()) +
                         " CPUs; load average at start " + load_average());

  const bool needs_mysql = std::any_of(config.workloads.begin(), config.workloads.end(),
                                       [](workload_kind k) { return k != workload_kind::pg_pg; });
  std::unique_ptr<xatm::testing::throwaway_servers> servers;
  if (config.pg.empty() && config.mysql.empty()) {
    std::cerr << "xatm-bench: no --pg/--mysql: starting throwaway servers\n";
    servers = xatm::testing::throwaway_servers::start();
    config.pg = servers->env().pg;
    config.pg2 = servers->env().pg2;
    config.mysql = servers->env().mysql;
  } else {
    if (config.pg.empty()) usage_error("--pg is needed (every workload writes to PostgreSQL)");
    if (config.mysql.empty() && needs_mysql) usage_error("--mysql is needed by the transfer and read-write workloads");
    config.pg2 = second_database(config.pg);
  }
  result.config = config;

  log_directory log_dir(config.log_dir);
  fsync_samples fsyncs;
  std::cerr << "xatm-bench: one 4 KiB write + fsync in the log dir takes " << fsyncs.take(log_dir.path, 200)
            << " ms (median of 200; sampled again before every run)\n";

  const std::string durability =
      config.allow_unsafe_durability
          ? "durability check OFF (--allow-unsafe-durability: the servers' fsync/flush settings were not checked)"
          : "durability check on (every RM passed: PostgreSQL fsync, MariaDB innodb_flush_log_at_trx_commit, "
            "sync_binlog)";
  result.notes.push_back(durability);
  std::cerr << "xatm-bench: " << durability << "\n";
  xatm::transaction_manager tm({.tm_id = "bench",
                                .log_path = (log_dir.path / "xatm-bench.db").string(),
                                .allow_unsafe_durability = config.allow_unsafe_durability});
  auto register_all = [&](xatm::transaction_manager& target) {
    target.register_rm("pg", "postgresql", config.pg);
    target.register_rm("pg2", "postgresql", config.pg2);
    if (!config.mysql.empty()) target.register_rm("maria", "mariadb", config.mysql);
  };
  register_all(tm);
  std::map<mode, xatm::transaction_manager*> tms{{mode::xa, &tm}};
  auto wanted = [&](mode m) { return std::find(config.modes.begin(), config.modes.end(), m) != config.modes.end(); };
  std::unique_ptr<xatm::transaction_manager> tm_early;
  if (wanted(mode::xa_early)) {
    tm_early = std::make_unique<xatm::transaction_manager>(
        xatm::tm_options{.tm_id = "bench-early",
                         .log_path = (log_dir.path / "xatm-bench-early.db").string(),
                         .early_acknowledgement = true,
                         .allow_unsafe_durability = config.allow_unsafe_durability});
    register_all(*tm_early);
    tms[mode::xa_early] = tm_early.get();
  }
  std::unique_ptr<xatm::transaction_manager> tm3;
  if (wanted(mode::three_phase)) {
    tm3 = std::make_unique<xatm::transaction_manager>(
        xatm::tm_options{.tm_id = "bench3",
                         .log_path = (log_dir.path / "xatm-bench-3pc.db").string(),
                         .protocol = xatm::commit_protocol::three_phase,
                         .allow_unsafe_durability = config.allow_unsafe_durability});
    register_all(*tm3);
    tms[mode::three_phase] = tm3.get();
  }
  // The commit-marker modes: the decision row goes in the first enlisted branch (the workload's
  // first RM), or in --decision-rm's branch.
  std::map<mode, std::unique_ptr<xatm::transaction_manager>> marker_tms;
  for (const auto& [m, early] : {std::pair{mode::commit_marker, false}, std::pair{mode::commit_marker_early, true}}) {
    if (!wanted(m)) continue;
    xatm::tm_options options{
        .tm_id = early ? "bench-cm-early" : "bench-cm",
        .log_path = (log_dir.path / (early ? "xatm-bench-cm-early.db" : "xatm-bench-cm.db")).string(),
        .early_acknowledgement = early,
        .protocol = xatm::commit_protocol::commit_marker,
        .allow_unsafe_durability = config.allow_unsafe_durability};
    options.decision_rm = config.decision_rm;
    marker_tms[m] = std::make_unique<xatm::transaction_manager>(options);
    register_all(*marker_tms[m]);
    tms[m] = marker_tms[m].get();
  }
  if (!config.decision_rm.empty()) result.notes.push_back("commit-marker decision RM: " + config.decision_rm);
  // The tcc mode: a two-phase TM with a TCC participant in process, whose barrier transactions
  // run through a transaction manager of the participant's own (its log is never written).
  std::unique_ptr<xatm::transaction_manager> tm_tcc;
  std::unique_ptr<xatm::transaction_manager> participant_tm;
  std::shared_ptr<xatm::bench::tcc_participant_in_process> participant;
  if (wanted(mode::tcc)) {
    tm_tcc = std::make_unique<xatm::transaction_manager>(
        xatm::tm_options{.tm_id = "bench-tcc",
                         .log_path = (log_dir.path / "xatm-bench-tcc.db").string(),
                         .allow_unsafe_durability = config.allow_unsafe_durability});
    register_all(*tm_tcc);
    participant_tm = std::make_unique<xatm::transaction_manager>(
        xatm::tm_options{.tm_id = "bench-wallet",
                         .log_path = (log_dir.path / "xatm-bench-wallet.db").string(),
                         .allow_unsafe_durability = config.allow_unsafe_durability});
    register_all(*participant_tm);
    participant = std::make_shared<xatm::bench::tcc_participant_in_process>(*participant_tm);
    tm_tcc->register_tcc(xatm::bench::tcc_participant_name, participant);
    tms[mode::tcc] = tm_tcc.get();
  }

  for (const char* rm_name : {"pg", "maria"}) {
    if (std::string(rm_name) == "maria" && config.mysql.empty()) continue;
    auto rm = tm.connect(rm_name);
    result.round_trip_ms[rm_name] = measure_round_trip_ms(*rm);
    std::cerr << "xatm-bench: one round trip (SELECT 1) to " << rm_name << " takes " << result.round_trip_ms[rm_name]
              << " ms (median of 200)\n";
  }

  bool all_verified = true;
  for (workload_kind kind : config.workloads) {
    if (stop_requested) break;
    const workload work(kind, config.accounts);
    if (participant) participant->use(work);
    auto admin_a = tm.connect(work.rm_a());
    auto admin_b = tm.connect(work.rm_b());
    std::cerr << "xatm-bench: " << work.description() << ": creating the tables\n";
    work.create_schema(*admin_a, *admin_b);
    std::map<mode, acknowledged> acks;  // the tables live as long as the workload
    for (int clients : config.clients) {
      if (stop_requested) break;
      fsyncs.take(log_dir.path, 50);
      runner bench_runner(config, work, tms, tm, clients);
      std::string line;
      int reported = 0;
      const auto progress = [&](const round_report& r) {
        line += (reported++ == 0 ? "" : ", ") + std::string(mode_name(r.m)) + " " +
                std::to_string(static_cast<long long>(r.throughput + 0.5)) + " tx/s";
        if (reported < r.modes) return;
        std::cerr << "xatm-bench: " << workload_name(kind) << ", " << clients_text(clients) << ", "
                  << (r.round < 0 ? std::string("warm-up")
                                  : "round " + std::to_string(r.round + 1) + "/" + std::to_string(r.rounds))
                  << ": " << line << "\n";
        line.clear();
        reported = 0;
      };
      auto cells = bench_runner.run(progress);
      for (const auto& [m, ack] : bench_runner.acknowledged_by_mode()) acks[m] += ack;
      if (bench_runner.half_committed() > 0) {
        result.notes.push_back(std::string(workload_name(kind)) + ", " + clients_text(clients) + ": " +
                               std::to_string(bench_runner.half_committed()) +
                               " local transactions committed on one database only (local commits are not atomic)");
      }
      verification check = work.verify(*admin_a, *admin_b, acks, clients);
      std::cerr << "xatm-bench: " << workload_name(kind) << ", " << clients_text(clients) << ": "
                << (check.ok ? "verified: " : "INVARIANT VIOLATED: ") << check.detail << "\n";
      all_verified = all_verified && check.ok;
      result.checks.push_back(std::move(check));
      for (auto& cell : cells) result.cells.push_back(std::move(cell));
    }
  }
  fsyncs.take(log_dir.path, 100);
  fsyncs.store(result);
  if (stop_requested) result.notes.push_back("interrupted: the results are partial");
  result.notes.push_back("load average at end " + load_average());

  std::cout << "xatm-bench " << result.started_utc << ": " << config.seconds << " s per mode and clients value in "
            << config.rounds << " interleaved rounds, " << config.warmup << " s warm-up; log fsync "
            << result.log_fsync_ms << " ms (median of " << result.log_fsync_samples
            << " samples through the run; batch medians " << result.log_fsync_low_ms << " to "
            << result.log_fsync_high_ms << " ms); "
            << (config.allow_unsafe_durability ? "durability check OFF (--allow-unsafe-durability)"
                                               : "durability check on");
  for (const auto& [rm_name, ms] : result.round_trip_ms)
    std::cout << "; round trip to " << rm_name << " " << ms << " ms";
  std::cout << "\n";
  for (const std::string& note : result.notes) std::cout << "note: " << note << "\n";
  print_tables(std::cout, result);
  const auto targets = evaluate_targets(result);
  print_targets(std::cout, targets);
  std::cout << "\n== checks\n";
  for (const verification& v : result.checks) {
    std::cout << (v.ok ? "ok      " : "FAILED  ") << workload_name(v.workload) << ", " << clients_text(v.clients)
              << ": " << v.detail << "\n";
  }
  std::cout.flush();

  if (!config.json_path.empty()) write_file(config.json_path, to_json(result, targets));
  if (!config.csv_path.empty()) write_file(config.csv_path, to_csv(result));
  write_file(config.chart_path, to_svg(result));
  if (!all_verified) return 1;
  return stop_requested ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings config = parse_options(argc, argv);
  // The library never installs a log sink; like a service, the bench shows warnings and errors.
  xatm::tools::install_console_log("warning");
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    return run(std::move(config));
  } catch (const std::exception& e) {
    std::cerr << "xatm-bench: " << e.what() << "\n";
    return 3;
  }
}
