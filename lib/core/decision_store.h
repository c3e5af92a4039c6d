// Internal: the TM's durable decision store (docs/design.md section 5) as the engines, recovery,
// the identity checks and the TM see it, and the plain types they exchange with it. lib/core
// knows stores only through this interface: the SQLite store (lib/sqlite) is named by the TM's
// wiring alone. Thread safety: a store's methods may be called from any number of threads at
// once; a store may be destroyed only once no thread is inside one of them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "xatm/result.h"

namespace xatm::detail {

// `precommit` is the three-phase mode's state (docs/design.md section 7); two-phase writes `commit`.
enum class decision_state : std::uint8_t { commit, precommit };

// One decision. It holds gtrids and RM names only, never connection settings or credentials:
// the application's configuration resolves RM names to connections.
struct decision_record {
  std::string gtrid;  // one of this TM's gtrids: `<tm_id>.<incarnation>.<seq>[.p3]`
  decision_state state = decision_state::commit;
  std::vector<std::string> branch_rms;  // branch i+1 (bqual "1", "2", ...) -> RM name
  std::int64_t created_unix_ms = 0;     // 0: the store stamps the time it queued the record
};

// A TCC branch (xatm/tcc.h), recorded before its try is sent, so that whatever happens after the
// try ends in its confirm (the gtrid has a commit decision) or its cancel (it has none). Kept
// until the gtrid is marked complete.
inline constexpr std::size_t max_tcc_payload = 64 * 1024;  // bytes (xatm/tcc.h)

struct tcc_branch_record {
  std::string gtrid;        // one of this TM's gtrids
  std::uint32_t branch = 0;  // its number among the transaction's TCC branches: 1, 2, ...
  std::string participant;  // the registered participant's name
  std::string payload;      // the application's bytes, sent with every step
  std::int64_t created_unix_ms = 0;  // 0: the store stamps the time it wrote the record
};

// The identity of the database an RM name reached when the store first met it (core/identity.h).
struct pinned_identity {
  std::string rm_name;
  std::string identity;             // the database's own identity row (core/identity.h)
  std::string description;          // for messages: server and database name as seen then
  std::int64_t pinned_unix_ms = 0;  // 0: now
};

struct decision_store_stats {
  std::uint64_t decisions_written = 0;    // decisions acknowledged as durable
  std::uint64_t batches = 0;              // durable writes (transactions, fsyncs) that held them
  std::uint64_t completions_written = 0;  // completions made durable
  std::uint64_t decisions_deleted = 0;    // decision records those completions removed from the store
};

// Whether a decision record() was given is in the store. The engine decides on this alone
// (docs/design.md section 4, step 6), never on the store's native error numbers.
enum class write_outcome : std::uint8_t {
  durable,      // in the store: the branches may be committed
  not_written,  // certainly not in the store: presumed abort holds, the branches may be rolled back
  unknown,      // may or may not be in the store: leave the branches prepared; only recovery, reading
                // the store after a restart, may decide
};

// What record() answers: the outcome and, unless durable, why.
class [[nodiscard]] write_result {
 public:
  write_result() = default;  // durable
  write_result(write_outcome outcome, failure cause) : outcome_(outcome), cause_(std::move(cause)) {}

  write_outcome outcome() const noexcept { return outcome_; }
  bool ok() const noexcept { return outcome_ == write_outcome::durable; }
  explicit operator bool() const noexcept { return ok(); }
  // Why the decision is not durable; only valid when !ok().
  const failure& error() const& { return cause_; }
  failure&& error() && { return std::move(cause_); }

 private:
  write_outcome outcome_ = write_outcome::durable;
  failure cause_;
};

// Why a store refused to open. The TM turns each into its public exception.
enum class open_refusal : std::uint8_t {
  in_use,         // another process (or another store object in this one) holds it
  misconfigured,  // the configuration does not fit it: another TM's store, an unsafe directory, a
                  // file that is not a decision store, a bad path or tm_id
  unusable,       // it exists (or may) but cannot be read or trusted: damage, lost writes, an I/O
                  // error. Never presume abort over it, never recreate it
};

struct store_refusal {
  open_refusal reason = open_refusal::unusable;
  failure cause;
};

// What opening a store (or one step of opening it) answers: a value, or why it was refused. A
// step that answers nothing else answers std::optional<store_refusal>: nullopt when it is fine.
template <class T>
class [[nodiscard]] open_result {
 public:
  open_result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  open_result(store_refusal refusal) : state_(std::in_place_index<1>, std::move(refusal)) {}  // NOLINT
  open_result(open_refusal reason, failure cause) : open_result(store_refusal{reason, std::move(cause)}) {}

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  // The value; throws the matching xatm::error when the open was refused.
  T& value() & {
    if (!ok()) throw_failure(error());
    return std::get<0>(state_);
  }
  T&& value() && {
    if (!ok()) throw_failure(error());
    return std::get<0>(std::move(state_));
  }
  // The refusal; only valid when !ok().
  const failure& error() const& { return std::get<1>(state_).cause; }
  open_refusal refusal() const { return std::get<1>(state_).reason; }
  store_refusal&& refused() && { return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, store_refusal> state_;
};

// The durable record of this TM's commit decisions, its incarnations and its RM identities.
class decision_store {
 public:
  virtual ~decision_store() = default;

  // Appends a decision and returns once it is durable (stores batch concurrent records into one
  // durable write). Outcomes, in-doubt ones first:
  // - unknown: the store failed (a write or fsync error). The decision may or may not be
  //   durable: do not roll back its branches, stop the TM, restart it and let recovery decide
  //   from what the store holds. The store is failed for good (failed()): it writes nothing
  //   more, and no write or fsync is ever retried. Also the outcome, with xa_code::duplicate_id,
  //   when the store already holds a decision for this gtrid: this record was not written, and
  //   the decision already there is the one recovery will act on.
  // - not_written: the decision certainly is not in the store (no space was left for it, or the
  //   store had failed before it), so its branches may be rolled back at once. With
  //   xa_code::invalid: the record is malformed (not this TM's gtrid, bad or no RM names), a
  //   programming error; nothing was written and the store is unaffected.
  // - durable: the branches may be committed.
  [[nodiscard]] virtual write_result record(const decision_record& decision) = 0;

  // Queues the deletion of a decision whose branches are all committed, together with the
  // gtrid's TCC branch records (its confirms or cancels are all done; a rolled-back gtrid with
  // TCC branches has records and no decision). One deletion in one write, so that no crash can
  // keep a TCC record whose commit decision is gone (recovery would cancel a confirmed branch).
  // Not forced: a completion lost in a crash only makes recovery meet the gtrid again, which it
  // handles idempotently. Ignored by a failed store.
  virtual void mark_complete(std::string_view gtrid) = 0;

  // Writes a TCC branch record and returns once it is durable. A write failure fails the store
  // for good, as a decision's does (unknown: this record may be in the store); the caller then
  // sends no try, and a record that did reach the store only makes recovery send a cancel that
  // the participant's barrier records as empty. not_written with xa_code::invalid: malformed (not this TM's gtrid, a bad
  // participant name, branch 0, a payload over 64 KiB).
  [[nodiscard]] virtual write_result record_tcc_branch(const tcc_branch_record& branch) = 0;

  // The TCC branch records in the store, oldest first (as pending(): what is durable, completions
  // still queued included). Fails on a failed store.
  [[nodiscard]] virtual result<std::vector<tcc_branch_record>> tcc_branches() const = 0;

  // The decisions in the store that are not completed, oldest first: what is durable, so a
  // record() still waiting is not included, and a completion still queued is (it is still
  // pending as far as a crash is concerned). Fails on a failed store.
  [[nodiscard]] virtual result<std::vector<decision_record>> pending() const = 0;

  // This open's incarnation: 1 for a new store, one more on every open after.
  virtual std::uint64_t incarnation() const noexcept = 0;
  // This open's incarnation id (random, recorded in the store): the middle part of its gtrids.
  virtual const std::string& incarnation_id() const noexcept = 0;
  // Whether a gtrid's incarnation part (an id, or a legacy number) was issued by this store. Not
  // this store's: a lost store's, a second host's with the same tm_id, or one issued after the
  // copy this store was restored from was taken. Recovery never presumes abort for those.
  virtual bool is_own_incarnation(std::string_view incarnation) const = 0;
  virtual const std::string& tm_id() const noexcept = 0;

  // The identity pinned for an RM name, if any.
  virtual std::optional<pinned_identity> pinned(std::string_view rm_name) const = 0;
  // Pins (or re-pins) an RM name's identity, durably, before it returns. A failure leaves the
  // pin as it was.
  [[nodiscard]] virtual result<void> pin(const pinned_identity& identity) = 0;
  // Pins `identity` unless its name has a pin already; answers the pin in force afterwards (the
  // one already there wins: two first pins at once agree on one).
  [[nodiscard]] virtual result<pinned_identity> pin_if_absent(const pinned_identity& identity) = 0;

  // True once a write failed: the store accepts no more decisions until it is reopened.
  virtual bool failed() const noexcept = 0;
  // Why the store failed (what every later write is told); nullopt while it has not.
  [[nodiscard]] virtual std::optional<failure> failure_cause() const = 0;
  virtual decision_store_stats stats() const noexcept = 0;
};

}  // namespace xatm::detail
