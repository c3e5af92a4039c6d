// xatm/tcc.h: TCC (try / confirm / cancel) participants next to XA branches (docs/tcc.md).
//
// A TCC participant is a service that cannot do XA (a wallet over HTTP, another team's stock
// service): it reserves in try, makes the reservation final in confirm and releases it in
// cancel. Two sides:
//  - the coordinator side, in the transaction manager: register a participant by name
//    (transaction_manager::register_tcc), enlist a TCC branch with a payload in a global
//    transaction (global_transaction::enlist_tcc). The branch is in the decision log before its
//    try is sent; the one commit decision covers XA and TCC branches together; confirm or cancel
//    is retried until it succeeds, by commit() within its window and then by recovery;
//  - the participant side, in the participant's service: tcc_barrier wraps its try, confirm and
//    cancel code so that duplicates do nothing, a cancel without a try is a recorded no-op, and a
//    try that arrives after its cancel is refused.
// Values here are plain data; a tcc_participant must be callable from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "xatm/export.h"

namespace xatm {

class connection;
class transaction_manager;

// The three steps of a TCC branch.
enum class tcc_step : std::uint8_t { try_, confirm, cancel };
// "try", "confirm", "cancel".
XATM_EXPORT const char* tcc_step_name(tcc_step step) noexcept;

// What a participant is asked: which branch, and the bytes the application enlisted it with.
// (gtrid, branch) is unique for ever; every retry of a step carries the same values.
struct tcc_request {
  std::string gtrid;
  std::uint32_t branch = 0;  // the branch's number in its global transaction, 1-based
  std::string participant;   // the registered name
  std::string payload;       // opaque to xatm (an order id, an amount); at most 64 KiB
  // The identity of the participant's database this branch belongs to (the participant answered
  // it at the first try and the decision log pinned it under the participant's name); empty
  // before anything is pinned. A participant whose database has another identity must not act:
  // tcc_barrier answers wrong_database.
  std::string identity;
};

// A participant's answer to one step.
enum class tcc_answer : std::uint8_t {
  done,     // the step took effect, now or before (a duplicate)
  refused,  // a definite no: a try that reserved nothing (no vote), or a confirm/cancel the
            // participant's barrier refuses (the other one already ran: a protocol violation)
  failed,   // no answer, a transport error, a timeout, a 5xx: unknown, ask again later
};
XATM_EXPORT const char* tcc_answer_name(tcc_answer answer) noexcept;

struct tcc_reply {
  tcc_answer answer = tcc_answer::failed;
  std::string detail;    // why, for messages and the recovery report (never a secret)
  std::string identity;  // the identity of the database the participant answered from
                         // (tcc_barrier::identity); empty when it tells none
};

// How the transaction manager reaches a participant. call() must return within about `timeout`
// and must not throw (an exception counts as failed). Implementations: make_http_participant(),
// or your own (an in-process service, gRPC, ...). Thread-safe.
class XATM_EXPORT tcc_participant {
 public:
  virtual ~tcc_participant() = default;
  virtual tcc_reply call(tcc_step step, const tcc_request& request, std::chrono::milliseconds timeout) = 0;
  // The identity of the participant's database without running a step, for `xatm-recover
  // --repin`; empty when it cannot tell. Must not throw.
  virtual std::string identify(std::chrono::milliseconds /*timeout*/) { return {}; }
};

// A participant over HTTP(S): POST <base_url>/try, /confirm, /cancel with the payload as the
// body (application/octet-stream) and the branch in the headers Xatm-Gtrid, Xatm-Branch and
// Xatm-Participant, and Xatm-Expect-Identity when the branch's database identity is known. 200
// means done, 409 refused (the body says why), anything else or no answer failed; the answer's
// Xatm-Identity header is the reply's identity. identify() is GET <base_url>/identity.
// base_url: http://host:port[/path] or https://... (the server's certificate is verified).
// Throws invalid_argument_error for a malformed URL, before anything is sent.
XATM_EXPORT std::shared_ptr<tcc_participant> make_http_participant(std::string_view base_url);

// ---- the participant's side -------------------------------------------------------------------

// What tcc_barrier::run did.
enum class barrier_outcome : std::uint8_t {
  ran,                   // the business code ran and committed with the barrier row
  duplicate,             // this step already ran for this branch: nothing done, answer done
  empty_cancel,          // a cancel for a try that never ran: recorded, nothing to release
  refused_after_cancel,  // a try after its cancel (hanging): refused, nothing reserved
  conflict,              // confirm after cancel or cancel after confirm: refused, nothing done
  not_tried,             // a confirm for a branch whose try never ran here: nothing done; a
                         // failure, not a refusal (it is what a misdirected confirm looks like)
  wrong_database,        // the request names another database identity than this one's:
                         // nothing done (a participant reached at the wrong address or moved)
};
XATM_EXPORT const char* barrier_outcome_name(barrier_outcome outcome) noexcept;
// The reply a participant's endpoint should give for an outcome: done for ran, duplicate and
// empty_cancel; refused for refused_after_cancel and conflict; failed for not_tried and
// wrong_database (the coordinator must not count them as answers: its branch is elsewhere).
XATM_EXPORT tcc_answer answer_for(barrier_outcome outcome) noexcept;

// Wraps a participant's try, confirm and cancel in its own database (PostgreSQL or MariaDB),
// through a transaction manager of the participant's own (its decision log is never written:
// every barrier transaction is a one-phase commit of one branch). The barrier row
// (xatm_tcc_barrier, keyed by gtrid, branch and step; DDL in docs/tcc.md, created by
// `xatm-recover --install-schema` or barrier_schema()) is written in the same local transaction
// as the business change, so the two commit or roll back together:
//  - try: runs `business` once; a duplicate does nothing; after a cancel it is refused;
//  - confirm: runs `business` once; refused (conflict) after a cancel; not_tried without a try;
//  - cancel: runs `business` once if the try ran; without a try records it and does nothing, so
//    that a late try is refused; refused (conflict) after a confirm.
// Concurrent deliveries of the same step serialise on the barrier row: one runs, the others are
// duplicates. `business` runs SQL on `db` (exec() or the native handle) and throws to refuse or
// fail: the barrier transaction is rolled back and the exception propagates. Answer refused only
// for a try that the business refuses (insufficient funds); a confirm or cancel whose business
// code throws must answer failed (a 5xx), so that it is retried: refused means "the other step
// ran", which the coordinator takes as final. Rolled-back work leaves no barrier row, so the
// step may be delivered again. A request whose identity is not this database's is answered
// wrong_database before anything is written.
class XATM_EXPORT tcc_barrier {
 public:
  // `rm_name` is a registered RM of `tm`; run() takes connections to it from the caller.
  tcc_barrier(transaction_manager& tm, std::string rm_name);

  barrier_outcome run(connection& db, tcc_step step, const tcc_request& request,
                      const std::function<void(connection& db)>& business);

  const std::string& rm_name() const noexcept { return rm_name_; }
  // The identity of the participant's database (its xatm_identity row, created on first use),
  // read once through `db` and kept; what the participant answers in tcc_reply::identity.
  std::string identity(connection& db);

 private:
  transaction_manager* tm_;
  std::string rm_name_;
  struct identity_cache;
  std::shared_ptr<identity_cache> identity_;  // read once, shared by copies
};

// The CREATE TABLE IF NOT EXISTS statement of the barrier table for a dialect ("postgresql",
// "mariadb" or "mysql").
XATM_EXPORT std::string barrier_schema(std::string_view dialect);

}  // namespace xatm
