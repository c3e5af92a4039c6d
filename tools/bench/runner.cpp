#include "bench/runner.h"

#include "bench/tcc_participant.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/resource_manager.h"
#include "xatm/error.h"

namespace xatm::bench {

std::atomic<bool> stop_requested{false};

namespace {

using clock = std::chrono::steady_clock;

// The engine's defaults (tm_options), so that raw-xa waits exactly as xa would.
constexpr auto prepare_timeout = std::chrono::seconds(10);
constexpr auto commit_window = std::chrono::seconds(5);
// raw-xa's branches carry "benc", not xatm's formatID: a TM's recovery sees them as foreign and
// never touches them, even when the bench dies with some of them prepared.
constexpr std::int32_t raw_xa_format_id = 0x62656e63;

struct cpu_times {
  double user = 0;
  double system = 0;
};

cpu_times process_cpu() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return {seconds(usage.ru_utime), seconds(usage.ru_stime)};
}

enum class outcome : std::uint8_t { committed, failed, in_doubt, half_committed };

// Per client and mode; written by the client thread during a round, read by the main thread
// between rounds (the round's mutex hand-off orders the two).
struct mode_stats {
  std::uint64_t committed = 0;  // measured rounds only
  std::uint64_t failed = 0;     // measured rounds only
  std::vector<std::uint32_t> latencies_us;
  acknowledged ack;  // every round, warm-up included
};

// Makes a connection usable for the next transaction after a failure, whatever state it is in.
void reset_connection(resource_manager& rm) {
  if (rm.call_in_flight()) rm.abandon_call();
  if (rm.connected() && rm.current_branch()) {
    // Ignored: a failed rollback is followed by a reconnect, which drops the branch anyway.
    (void)rm.rollback(*rm.current_branch());
  }
  if (rm.connected() && !rm.current_branch()) return;
  // Ignored: a failed reconnect shows up as the next transaction's failure.
  (void)rm.reconnect();
}

// A local transaction that failed: roll it back, or reconnect if the connection is gone.
void roll_back_local(resource_manager& rm) {
  if (rm.connected()) {
    // Ignored: when ROLLBACK itself fails the connection is replaced below.
    if (rm.exec("ROLLBACK").ok()) return;
  }
  (void)rm.reconnect();  // ignored: see reset_connection
}

// Sends `verb` to every branch at once and waits for all answers, as the engine's call_all()
// does (begin_call, then one drive_calls poll loop); an RM that misses the deadline is
// abandoned.
std::vector<result<vote>> call_all(std::span<resource_manager* const> rms, std::span<const xid* const> ids,
                                   xa_verb verb, clock::time_point deadline) {
  std::vector<result<vote>> answers(rms.size(), result<vote>(vote::commit));
  std::vector<resource_manager*> in_flight;
  in_flight.reserve(rms.size());
  for (std::size_t k = 0; k < rms.size(); ++k) {
    if (auto sent = rms[k]->begin_call(verb, *ids[k]); !sent) {
      answers[k] = std::move(sent).error();
    } else {
      in_flight.push_back(rms[k]);
    }
  }
  auto unanswered = drive_calls(in_flight, deadline);
  for (std::size_t k = 0; k < rms.size(); ++k) {
    if (!rms[k]->call_in_flight()) continue;
    if (std::find(unanswered.begin(), unanswered.end(), rms[k]) != unanswered.end()) {
      rms[k]->abandon_call();
      answers[k] = make_failure(xa_code::rm_failure, "no answer within the timeout", rms[k]->name());
    } else {
      answers[k] = rms[k]->finish_call();
    }
  }
  return answers;
}

bool all_ok(const std::vector<result<vote>>& answers) {
  return std::all_of(answers.begin(), answers.end(), [](const result<vote>& r) { return r.ok(); });
}

// A tag that keeps raw-xa gtrids of two runs apart (a killed run may leave branches prepared
// on servers it did not start).
std::string run_nonce() {
  return std::to_string(static_cast<long long>(std::time(nullptr))) + "-" + std::to_string(::getpid());
}

}  // namespace

struct runner::round_plan {
  mode m = mode::local;
  clock::time_point deadline;
  bool measured = false;
};

struct runner::client {
  int index = 0;
  std::unique_ptr<resource_manager> a;
  std::unique_ptr<resource_manager> b;
  std::mt19937_64 random;
  std::uint64_t sequence = 0;
  std::map<mode, mode_stats> stats;
  std::string error;  // why it could not connect
};

namespace {

struct coordination {
  std::mutex mutex;
  std::condition_variable round_start;
  std::condition_variable round_done;
  std::uint64_t generation = 0;
  bool quit = false;
  int ready = 0;
  int done = 0;
};

}  // namespace

runner::runner(const settings& config, const workload& work, std::map<mode, transaction_manager*> tms,
               transaction_manager& connector, int clients)
    : config_(config), work_(work), tms_(std::move(tms)), connector_(connector), clients_(clients) {}

std::vector<measurement> runner::run(const std::function<void(const round_report&)>& progress) {
  std::vector<mode> modes;
  for (mode m : config_.modes) {
    if (m == mode::local || m == mode::raw_xa || tms_.contains(m)) modes.push_back(m);
  }
  const std::string nonce = run_nonce();
  const bool transfer_like = work_.kind() != workload_kind::read_write;

  coordination sync;
  round_plan plan;
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < clients_; ++i) {
    auto c = std::make_unique<client>();
    c->index = i;
    c->random.seed(static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) + static_cast<std::uint64_t>(i));
    clients.push_back(std::move(c));
  }

  // One transaction of mode m; answers how it ended.
  auto execute = [&](client& c, mode m, transaction_input& in) -> outcome {
    resource_manager& a = *c.a;
    resource_manager& b = *c.b;
    switch (m) {
      case mode::local: {
        try {
          a.exec(local_begin_statement(a)).value();
          work_.run_a(a, in);
          a.exec("COMMIT").value();
        } catch (const std::exception&) {
          roll_back_local(a);
          return outcome::failed;
        }
        try {
          b.exec(local_begin_statement(b)).value();
          work_.run_b(b, in);
          b.exec("COMMIT").value();
        } catch (const std::exception&) {
          roll_back_local(b);
          return transfer_like ? outcome::half_committed : outcome::failed;
        }
        return outcome::committed;
      }
      case mode::raw_xa: {
        const std::string gtrid =
            "xatm-bench-raw." + nonce + "." + std::to_string(c.index) + "." + std::to_string(c.sequence);
        const xid xa(raw_xa_format_id, gtrid, "1");
        const xid xb(raw_xa_format_id, gtrid, "2");
        resource_manager* both[] = {&a, &b};
        const xid* ids[] = {&xa, &xb};
        try {
          // As enlist() does: blocking starts, one after the other.
          a.start(xa).value();
          b.start(xb).value();
          work_.run_a(a, in);
          work_.run_b(b, in);
          // The engine's steps 2-7 without the TM: end all, skip read-only branches, one writer
          // commits in one phase, else prepare all and commit all. No decision log.
          if (!all_ok(call_all(both, ids, xa_verb::end, clock::now() + prepare_timeout)))
            throw std::runtime_error("end");
          std::vector<resource_manager*> readers;
          std::vector<const xid*> reader_ids;
          std::vector<resource_manager*> writers;
          std::vector<const xid*> writer_ids;
          for (std::size_t k = 0; k < 2; ++k) {
            (both[k]->known_read_only() ? readers : writers).push_back(both[k]);
            (both[k]->known_read_only() ? reader_ids : writer_ids).push_back(ids[k]);
          }
          if (writers.size() <= 1) {
            auto votes = call_all(readers, reader_ids, xa_verb::prepare, clock::now() + prepare_timeout);
            for (auto& v : votes) {
              if (!v.ok() || v.value() != vote::read_only) throw std::runtime_error("read-only prepare");
            }
            if (!writers.empty()) {
              auto done = call_all(writers, writer_ids, xa_verb::commit_one_phase, clock::now() + commit_window);
              if (!done.front().ok()) {
                reset_connection(a);
                reset_connection(b);
                return is_rollback_code(done.front().error().code) ? outcome::failed : outcome::in_doubt;
              }
            }
            return outcome::committed;
          }
          if (!all_ok(call_all(both, ids, xa_verb::prepare, clock::now() + prepare_timeout))) {
            throw std::runtime_error("prepare");
          }
          if (!all_ok(call_all(both, ids, xa_verb::commit, clock::now() + commit_window))) {
            // After both prepared: a branch left prepared is this run's leak, not a rollback.
            reset_connection(a);
            reset_connection(b);
            return outcome::in_doubt;
          }
          return outcome::committed;
        } catch (const std::exception&) {
          reset_connection(a);
          reset_connection(b);
          return outcome::failed;
        }
      }
      case mode::xa:
      case mode::xa_early:
      case mode::three_phase:
      case mode::commit_marker:
      case mode::commit_marker_early: {
        try {
          auto tx = tms_.at(m)->begin();
          tx.enlist(a);
          tx.enlist(b);
          work_.run_a(a, in);
          work_.run_b(b, in);
          // committed and completion_pending are both committed.
          (void)tx.commit();
          return outcome::committed;
        } catch (const in_doubt_error&) {
          reset_connection(a);
          reset_connection(b);
          return outcome::in_doubt;
        } catch (const heuristic_error&) {
          reset_connection(a);
          reset_connection(b);
          return outcome::in_doubt;
        } catch (const log_failure_error&) {
          reset_connection(a);
          reset_connection(b);
          return outcome::in_doubt;  // a failed fsync leaves the outcome to recovery
        } catch (const std::exception&) {
          reset_connection(a);
          reset_connection(b);
          return outcome::failed;
        }
      }
      case mode::tcc: {
        try {
          auto tx = tms_.at(m)->begin();
          tx.enlist(a);
          work_.run_a(a, in);
          // Side b's work runs in the participant's confirm, after the decision.
          tx.enlist_tcc(tcc_participant_name, tcc_participant_in_process::payload_of(in));
          (void)tx.commit();
          return outcome::committed;
        } catch (const in_doubt_error&) {
          reset_connection(a);
          return outcome::in_doubt;
        } catch (const heuristic_error&) {
          reset_connection(a);
          return outcome::in_doubt;
        } catch (const log_failure_error&) {
          reset_connection(a);
          return outcome::in_doubt;
        } catch (const std::exception&) {
          reset_connection(a);
          return outcome::failed;
        }
      }
    }
    return outcome::failed;
  };

  auto client_main = [&](client& c) {
    try {
      // The raw-xa mode drives the XA verbs itself: the bench holds xatm's side of each connection.
      c.a = resource_manager::of(connector_.connect(work_.rm_a()));
      c.b = resource_manager::of(connector_.connect(work_.rm_b()));
    } catch (const std::exception& e) {
      c.error = e.what();
    }
    std::unique_lock lock(sync.mutex);
    ++sync.ready;
    sync.round_done.notify_all();
    std::uint64_t seen = 0;
    for (;;) {
      sync.round_start.wait(lock, [&] { return sync.quit || sync.generation != seen; });
      if (sync.quit) return;
      seen = sync.generation;
      const round_plan mine = plan;
      lock.unlock();
      mode_stats& stats = c.stats[mine.m];
      while (c.error.empty() && !stop_requested.load(std::memory_order_relaxed) && clock::now() < mine.deadline) {
        const char* label = mode_name(mine.m);
        transaction_input in = work_.draw(c.random,
                                          std::string(label) + "-" + std::to_string(clients_) + "-" +
                                              std::to_string(c.index) + "-" + std::to_string(c.sequence),
                                          label);
        const auto started = clock::now();
        const outcome result = execute(c, mine.m, in);
        const auto finished = clock::now();
        ++c.sequence;
        switch (result) {
          case outcome::committed:
            ++stats.ack.count;
            stats.ack.amount += in.amount;
            if (mine.measured) {
              ++stats.committed;
              const auto us = std::chrono::duration_cast<std::chrono::microseconds>(finished - started).count();
              stats.latencies_us.push_back(static_cast<std::uint32_t>(us));
            }
            break;
          case outcome::in_doubt:
            ++stats.ack.uncertain;
            stats.ack.uncertain_amount += in.amount;
            if (mine.measured) ++stats.failed;
            break;
          case outcome::half_committed:
            ++stats.ack.half_committed;
            stats.ack.half_amount += in.amount;
            if (mine.measured) ++stats.failed;
            break;
          case outcome::failed:
            if (mine.measured) ++stats.failed;
            break;
        }
      }
      if (mine.m == mode::xa_early && c.error.empty()) {
        // With early acknowledgement the last commit of the round may still be in flight; the
        // next use of a connection waits for it, so the round ends with every commit answered.
        for (resource_manager* rm : {c.a.get(), c.b.get()}) {
          if (!rm->exec("SELECT 1").ok()) reset_connection(*rm);
        }
      }
      lock.lock();
      ++sync.done;
      sync.round_done.notify_all();
    }
  };

  std::vector<std::thread> threads;
  threads.reserve(clients.size());
  for (auto& c : clients) threads.emplace_back(client_main, std::ref(*c));
  auto stop_clients = [&] {
    {
      std::lock_guard lock(sync.mutex);
      sync.quit = true;
    }
    sync.round_start.notify_all();
    for (auto& t : threads) t.join();
  };

  {
    std::unique_lock lock(sync.mutex);
    sync.round_done.wait(lock, [&] { return sync.ready == clients_; });
  }
  for (const auto& c : clients) {
    if (!c->error.empty()) {
      stop_clients();
      throw std::runtime_error("client " + std::to_string(c->index) + " cannot connect: " + c->error);
    }
  }

  std::map<mode, measurement> results;
  for (mode m : modes) {
    measurement& cell = results[m];
    cell.workload = work_.kind();
    cell.m = m;
    cell.clients = clients_;
  }
  auto committed_so_far = [&](mode m) {
    std::uint64_t total = 0;
    for (const auto& c : clients) total += c->stats[m].ack.count;
    return total;
  };
  auto run_round = [&](mode m, double seconds, bool measured, int round, int rounds) {
    const auto length = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
    const std::uint64_t before = committed_so_far(m);
    tm_statistics tm_before;
    if (tms_.contains(m)) tm_before = tms_.at(m)->statistics();
    const cpu_times cpu_before = process_cpu();
    const auto started = clock::now();
    {
      std::lock_guard lock(sync.mutex);
      plan = round_plan{m, started + length, measured};
      sync.done = 0;
      ++sync.generation;
    }
    sync.round_start.notify_all();
    {
      std::unique_lock lock(sync.mutex);
      sync.round_done.wait(lock, [&] { return sync.done == clients_; });
    }
    const double elapsed = std::chrono::duration<double>(clock::now() - started).count();
    const cpu_times cpu_after = process_cpu();
    const std::uint64_t committed = committed_so_far(m) - before;
    if (measured) {
      measurement& cell = results[m];
      cell.seconds += elapsed;
      cell.cpu_user_seconds += cpu_after.user - cpu_before.user;
      cell.cpu_system_seconds += cpu_after.system - cpu_before.system;
      if (tms_.contains(m)) {
        const tm_statistics after = tms_.at(m)->statistics();
        cell.tm_committed += after.committed - tm_before.committed;
        cell.log_batches += after.log_batches - tm_before.log_batches;
        cell.decisions_logged += after.decisions_logged - tm_before.decisions_logged;
      }
    }
    if (progress)
      progress(round_report{m, round, rounds, static_cast<int>(modes.size()),
                            elapsed > 0 ? static_cast<double>(committed) / elapsed : 0});
  };

  const int rounds = std::max(1, config_.rounds);
  if (config_.warmup > 0) {
    for (mode m : modes) {
      if (stop_requested) break;
      run_round(m, config_.warmup, false, -1, rounds);
    }
  }
  for (int r = 0; r < rounds && !stop_requested; ++r) {
    for (std::size_t i = 0; i < modes.size() && !stop_requested; ++i) {
      run_round(modes[(static_cast<std::size_t>(r) + i) % modes.size()], config_.seconds / rounds, true, r, rounds);
    }
  }
  stop_clients();

  std::vector<measurement> cells;
  for (mode m : modes) {
    measurement& cell = results[m];
    for (auto& c : clients) {
      mode_stats& s = c->stats[m];
      cell.committed += s.committed;
      cell.failed += s.failed;
      cell.latencies_us.insert(cell.latencies_us.end(), s.latencies_us.begin(), s.latencies_us.end());
      acks_[m] += s.ack;
    }
    cell.finish();
    cells.push_back(std::move(cell));
  }
  return cells;
}

std::map<mode, acknowledged> runner::acknowledged_by_mode() const { return acks_; }

std::uint64_t runner::half_committed() const {
  std::uint64_t total = 0;
  for (const auto& [m, ack] : acks_) total += ack.half_committed;
  return total;
}

}  // namespace xatm::bench
