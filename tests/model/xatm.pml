/* xatm's commit protocols as built, for the SPIN model checker (docs/design.md, "Model checking").
 *
 * One model, three protocols (-DPROTO=1 two-phase commit with presumed abort, 2 three-phase mode,
 * 3 the commit-marker protocol), N branches (2 or 3), one on each RM; RM 0 is the three-phase
 * arbiter and the commit-marker decision RM. What acts:
 *   - tm(k): the TM process of incarnation k. It holds the decision log's lock and its
 *     incarnation's lease while it lives, runs recovery(k) beside it, and coordinates transaction
 *     k (transactions 0 .. TXS-1). It may crash at every crash point of the code
 *     (CRASH_POINT steps, named as lib/'s XATM_CRASH_POINT calls): its sessions end with it
 *     (active branches roll back, a prepare in flight lands or not), and a TM of incarnation k+1
 *     restarts with the same log, sooner or later. Any step may stall: SPIN interleaves every
 *     other process's steps at every point.
 *   - recovery(k, 1): that TM's recovery; recovery(255, 0): xatm-recover or another xatm
 *     instance (NTERM of them), acting at any time. A recovery run may be killed at
 *     a RECOVERY_CRASH_POINT step and is run again.
 *   - lost replies (MAXLOST), crashes (MAXCRASH), killed recovery runs (MAXKILL) and connection
 *     strings that reach the wrong database (MAXWRONG) are bounded: termination is "every branch
 *     ends once these stop".
 * Each transaction has its own gtrid (tm_id.incarnation id.seq: unique); -DMUTANT_NO_UNIQUE_GTRID
 * gives every transaction the same one. Other mutants: MUTANT_EARLY_MARKER_DELETE,
 * MUTANT_UNVERIFIED_RM, MUTANT_DECISION_INSERT_IF_ABSENT (tests/model/mutants.txt).
 */

#define TWO_PC 1
#define THREE_PC 2
#define COMMIT_MARKER 3
#ifndef PROTO
#define PROTO TWO_PC
#endif
#ifndef N
#define N 2          /* branches, one per RM */
#endif
#ifndef TXS
#define TXS 2        /* transactions: 0 by the first incarnation, 1 by the restarted one */
#endif
#ifndef NTERM
#define NTERM 1      /* terminators / xatm-recover runs besides the TM's own recovery */
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#ifndef MAXKILL
#define MAXKILL 1
#endif
#ifndef MAXLOST
#define MAXLOST 1
#endif
#ifndef MAXWRONG
#define MAXWRONG 1
#endif

#ifdef MUTANT_NO_UNIQUE_GTRID
#define G 1
#define GID(t) 0
#else
#define G TXS
#define GID(t) (t)
#endif

#define NOINC 255

/* a branch at its RM */
#define IDLE 0
#define ACTIVE 1
#define PREPARED 2
#define COMMITTED 3
#define ABORTED 4
byte br[TXS * N];
#define BR(t, i) br[(t) * N + (i)]

/* xatm_marker rows, per RM and gtrid; wrongmk: the table of the database a mistyped connection
 * string reaches instead of RM 0 */
#define NONE 0
#define MP 1
#define MA 2
byte mk[N * G];
#define MK(j, g) mk[(j) * G + (g)]
byte wrongmk[G];
bool rowlock[G];     /* commit-marker: the decision row inserted, not committed, in branch 0 */
bool logrec[G];      /* the decision log: COMMIT record (2PC), pre-commit note (3PC) */
bool handed[TXS];    /* commit() handed the gtrid over to its TM's recovery */
byte live = NOINC;   /* the incarnation whose TM is up: it holds the log's lock and its lease */
bool tool_busy;      /* xatm-recover holds the log's lock (two-phase commit) */
byte crashes, kills, lost, wrong;

/* ghosts for the properties */
bool decided[TXS];   /* transaction t's own decision is durable */
bool wa_bad;         /* a branch committed before its transaction's decision was durable */
bool forget_bad;     /* a decision was forgotten while a branch of its gtrid was prepared */

#define ANY(t, s) (BR(t, 0) == s || BR(t, 1) == s || BR(t, N - 1) == s)
#define MIXED(t) (ANY(t, COMMITTED) && ANY(t, ABORTED))
#define UNSETTLED(t) (ANY(t, ACTIVE) || ANY(t, PREPARED))
#define atomic_outcome (!MIXED(0) && !MIXED(TXS - 1))
#define all_settled (!UNSETTLED(0) && !UNSETTLED(TXS - 1))
#define PREP_G(g) ((GID(0) == (g) && ANY(0, PREPARED)) || (GID(TXS - 1) == (g) && ANY(TXS - 1, PREPARED)))
#define LEASE_HELD(g) (live < TXS && GID(live) == (g))

ltl safety { [] (atomic_outcome && !wa_bad && !forget_bad) }   /* the three below in one run */
ltl atomicity { [] atomic_outcome }
ltl write_ahead { [] !wa_bad }
ltl decision_kept { [] !forget_bad }
ltl termination { <> [] all_settled }

mtype = { after_start, before_prepare, after_first_prepare, after_all_prepared, before_decision_write,
          after_decision_durable, after_first_commit, after_all_committed, before_complete_mark,
          after_arbiter_precommit, after_all_precommit, marker_before_decision_insert,
          marker_after_decision_insert, marker_after_decision_commit, recovery_after_scan,
          recovery_after_first_resolve };

#define CRASH_POINT(p) \
  if \
  :: crashes < MAXCRASH -> crashes++; printf("MSC: TM %d killed at %e\n", me, p); goto crashed \
  :: true \
  fi
#define RECOVERY_CRASH_POINT(p) \
  if \
  :: kills < MAXKILL -> kills++; printf("MSC: recovery %d killed at %e\n", me, p); goto killed \
  :: true \
  fi

/* A commit of a branch that is not prepared any more answers "does not exist": nothing changes. */
#define COMMIT_BRANCH(t, i) \
  if \
  :: BR(t, i) == PREPARED -> BR(t, i) = COMMITTED; if :: !decided[t] -> wa_bad = true :: else fi \
  :: else \
  fi
#define RESOLVE(t, i, commit) \
  if \
  :: BR(t, i) == PREPARED && (commit) -> BR(t, i) = COMMITTED; if :: !decided[t] -> wa_bad = true :: else fi \
  :: BR(t, i) == PREPARED && !(commit) -> BR(t, i) = ABORTED \
  :: else \
  fi
#define FORGET(g) if :: PREP_G(g) -> forget_bad = true :: else fi

/* ---- the coordinator: commit() of lib/core/two_phase_commit.cpp ------------------------------ */

/* One prepare's answer. A lost one leaves the branch prepared or not (its connection is closed:
 * a prepare not applied rolls back with it) and counts as a no-vote; commit() hands the gtrid
 * over, since a rollback from a new connection may come before the prepare. */
#define PREPARE_ANSWER(i) \
  if \
  :: (early >> (i)) & 1 -> skip \
  :: !((early >> (i)) & 1) -> BR(me, i) = PREPARED \
  :: !((early >> (i)) & 1) -> BR(me, i) = ABORTED; no = true \
  :: lost < MAXLOST -> lost++; \
     if :: BR(me, i) == ACTIVE -> BR(me, i) = PREPARED :: BR(me, i) == ACTIVE -> BR(me, i) = ABORTED :: else fi; \
     no = true; handed[me] = true \
  fi

proctype tm(byte me) {
  byte i, k, g, r;
  byte early;     /* prepares applied by their RMs before the decision insert (commit-marker) */
  bool sent;      /* the prepares are on their way */
  bool no, pending, inserted;
  atomic { !tool_busy -> live = me }   /* takes the log's lock; its lease */
  run recovery(me, 1);
  if
  :: me >= TXS -> goto done
  :: else
  fi;
  g = GID(me);
  /* enlist(): XA START on each RM */
  for (i : 0 .. N - 1) {
#ifdef MUTANT_NO_UNIQUE_GTRID
    /* the same XID still in use on the RM: XA START is refused */
    if :: me > 0 && (BR(0, i) == ACTIVE || BR(0, i) == PREPARED) -> goto rollback :: else fi;
#endif
    BR(me, i) = ACTIVE;
    CRASH_POINT(after_start)
  }
#if PROTO != COMMIT_MARKER
  CRASH_POINT(before_prepare);
  sent = true;
  k = 0;
  for (i : 0 .. N - 1) {
    PREPARE_ANSWER(i);
    if :: k == 0 -> k = 1; CRASH_POINT(after_first_prepare) :: else fi
  }
  if :: no -> goto rollback :: else fi;
  CRASH_POINT(after_all_prepared);
#if PROTO == TWO_PC
  /* 6. the commit point: the COMMIT record durable in the log */
  CRASH_POINT(before_decision_write);
  if
  :: atomic { logrec[g] = true; decided[me] = true }
  :: goto rollback                                   /* not_written: nothing reached the file */
  :: crashes < MAXCRASH ->                           /* unknown: fsync failed, restart decides */
     crashes++;
     if :: atomic { logrec[g] = true; decided[me] = true } :: skip fi;
     goto crashed
  fi;
  CRASH_POINT(after_decision_durable);
#else
  /* three-phase PreCommit: insert P if absent at the arbiter and read the winner back; a lost
   * reply is retried once on a fresh connection; twice lost: in doubt, termination decides */
  k = 0;
  do
  :: k == 2 -> handed[me] = true; goto done
  :: k < 2 ->
     if
     :: atomic { if :: MK(0, g) == NONE -> MK(0, g) = MP; decided[me] = true :: else fi; r = MK(0, g) }; break
     :: lost < MAXLOST ->
        lost++;
        if :: atomic { MK(0, g) == NONE -> MK(0, g) = MP; decided[me] = true } :: true fi;
        k++
     fi
  od;
  if :: r == MA -> goto rollback :: else fi;
  CRASH_POINT(after_arbiter_precommit);
  /* hints on the other RMs (insert-if-absent; one that fails is skipped) and the log's note */
  for (i : 1 .. N - 1) {
    if :: atomic { MK(i, g) == NONE -> MK(i, g) = MP } :: true fi
  }
  if :: logrec[g] = true :: true fi;
  CRASH_POINT(after_all_precommit);
#endif
#else
  /* commit-marker: end all but the decision branch 0, prepare the others, meanwhile insert the
   * decision row inside branch 0 (a plain INSERT: a row already there fails it) */
  CRASH_POINT(before_prepare);
  sent = true;
  for (i : 1 .. N - 1) {
    if :: early = early | (1 << i); BR(me, i) = PREPARED :: true fi   /* the RM applied it already */
  }
  CRASH_POINT(marker_before_decision_insert);
  atomic {
#ifdef MUTANT_DECISION_INSERT_IF_ABSENT
    if :: MK(0, g) == NONE -> rowlock[g] = true :: else fi;
    inserted = true
#else
    if :: MK(0, g) == NONE -> rowlock[g] = true; inserted = true :: else -> inserted = false fi
#endif
  }
  k = 0;
  for (i : 1 .. N - 1) {
    PREPARE_ANSWER(i);
    if :: k == 0 -> k = 1; CRASH_POINT(after_first_prepare) :: else fi
  }
  if :: no -> goto rollback :: else fi;
  CRASH_POINT(after_all_prepared);
  if :: !inserted -> goto rollback :: else fi;
  CRASH_POINT(marker_after_decision_insert);
  /* the commit point: branch 0's one-phase commit, its row with it */
  if
  :: atomic {
       BR(me, 0) = COMMITTED;
       if :: rowlock[g] -> rowlock[g] = false; MK(0, g) = MP; decided[me] = true :: else fi;
       if :: !decided[me] -> wa_bad = true :: else fi
     }
  :: atomic { BR(me, 0) = ABORTED; rowlock[g] = false }; goto rollback   /* refused */
  :: lost < MAXLOST ->
     /* no verdict: the connection is closed, so a commit not applied dies with it; then insert
      * A if absent on a control connection and follow the winner */
     lost++;
     if
     :: atomic {
          BR(me, 0) = COMMITTED;
          if :: rowlock[g] -> rowlock[g] = false; MK(0, g) = MP; decided[me] = true :: else fi;
          if :: !decided[me] -> wa_bad = true :: else fi
        }
     :: atomic { BR(me, 0) = ABORTED; rowlock[g] = false }
     fi;
     atomic { if :: MK(0, g) == NONE -> MK(0, g) = MA :: else fi; r = MK(0, g) };
     if :: r == MA -> goto rollback :: else fi
  fi;
  CRASH_POINT(marker_after_decision_commit);
#endif
  /* 7. commit every prepared branch; a lost reply is retried, or left to recovery */
  k = 0;
  for (i : 0 .. N - 1) {
    if
    :: PROTO == COMMIT_MARKER && i == 0 -> skip
    :: else ->
       if
       :: atomic { COMMIT_BRANCH(me, i) }
       :: lost < MAXLOST -> lost++; if :: atomic { COMMIT_BRANCH(me, i) } :: true fi; pending = true
       fi;
       if :: k == 0 -> k = 1; CRASH_POINT(after_first_commit) :: else fi
    fi
  }
  if
  :: pending ->
     if
     :: for (i : 0 .. N - 1) { atomic { COMMIT_BRANCH(me, i) } }
     :: handed[me] = true; goto done                  /* completion pending: recovery finishes */
     fi
  :: else
  fi;
  CRASH_POINT(after_all_committed);
  CRASH_POINT(before_complete_mark);
  /* 8. forget: the log's record and the marker rows */
  atomic {
    FORGET(g);
    logrec[g] = false;
    for (i : 0 .. N - 1) { MK(i, g) = NONE }
  }
  goto done;
rollback:
  i = 0;
  for (i : 0 .. N - 1) {
    if
    :: atomic {
         if :: BR(me, i) == ACTIVE || BR(me, i) == PREPARED -> BR(me, i) = ABORTED :: else fi;
         if :: i == 0 && PROTO == COMMIT_MARKER -> rowlock[g] = false :: else fi
       }
    :: lost < MAXLOST && BR(me, i) == PREPARED -> lost++; handed[me] = true   /* recovery rolls it back */
    fi
  }
  goto done;
crashed:
  atomic {
    for (i : 0 .. N - 1) {
      if
      :: BR(me, i) == ACTIVE && sent && !(PROTO == COMMIT_MARKER && i == 0) -> BR(me, i) = PREPARED
      :: BR(me, i) == ACTIVE -> BR(me, i) = ABORTED
      :: else
      fi
    }
    if :: PROTO == COMMIT_MARKER -> rowlock[g] = false :: else fi;
    live = NOINC
  }
  run tm(me + 1);   /* restarted with the same log, sooner or later */
done:
  skip
}

/* ---- recovery: lib/core/recovery.cpp --------------------------------------------------------- */

/* Branch x = t * N + i may be acted on: the TM's own older incarnations and a handed-over gtrid
 * of its live one; a terminator (no log) any three-phase / commit-marker branch. */
/* A TM's recovery dies with its TM: no step of it acts after that. */
#define ALIVE if :: is_tm && live != me -> goto finish :: else fi
#define ALLOWED(t) (!is_tm || (t) < me || ((t) == me && handed[t]))
#define PICKABLE(k) ((k) < TXS * N && br[k] == PREPARED && ALLOWED((k) / N) && !((vis >> (k)) & 1))
#define ANY_PICKABLE (PICKABLE(0) || PICKABLE(1) || PICKABLE(2) || PICKABLE(3) || PICKABLE(4) || PICKABLE(5))
#define PICK(k) :: PICKABLE(k) -> x = k
#define HAS_ROWS(g) (MK(0, g) != NONE || MK(1, g) != NONE || MK(N - 1, g) != NONE || (is_tm && logrec[g]))

proctype recovery(byte me; bit is_tm) {
  byte x, t, i, g, r, j;
  byte pend, seen, ver, left, lmp, lma, vis, runs;
  bool first, w, hsnap;
  if
  :: !is_tm && wrong < MAXWRONG -> wrong++; w = true   /* its connection string reaches another database */
  :: true
  fi;
end_loop:
  do
  :: is_tm && live != me -> break
#if PROTO == TWO_PC
  /* one run: pending decisions, scan every RM, resolve, forget. xatm-recover needs the log's lock */
  :: atomic {
       (is_tm || (live == NOINC && !tool_busy && runs < 2)) && (ANY(0, PREPARED) || ANY(TXS - 1, PREPARED) || logrec[0] || logrec[G - 1]) ->
       tool_busy = !is_tm; runs = runs + !is_tm;
       /* the handed-over gtrids are copied before the log is read (tm_core::recover) */
       hsnap = me < TXS && handed[me];
       for (g : 0 .. G - 1) { if :: logrec[g] -> pend = pend | (1 << g) :: else fi }
       g = 0; t = 0
     }
     i = 0;
     do
     :: atomic { i == N -> i = 0; break }
     :: atomic {
         i < N ->
         if
         :: w && !is_tm ->
#ifdef MUTANT_UNVERIFIED_RM
            ver = ver | (1 << i)   /* taken for scanned: the other database holds none of these branches */
#else
            skip                   /* identity mismatch: nothing done there, no decision forgotten */
#endif
         :: else ->
            ver = ver | (1 << i);
            for (t : 0 .. TXS - 1) { if :: BR(t, i) == PREPARED -> seen = seen | (1 << (t * N + i)) :: else fi };
            t = 0
         fi;
         i++
       }
     od;
     RECOVERY_CRASH_POINT(recovery_after_scan);
     first = true;
     do
     :: atomic { seen == 0 -> break }
     :: d_step {
          seen != 0 ->
          x = 0;
          do :: (seen >> x) & 1 -> break :: else -> x++ od;
          seen = seen & ~(1 << x); t = x / N; i = x % N; x = 0
        }
        if
        :: is_tm && t == me && !hsnap -> left = left | (1 << t)           /* in flight in this TM */
        :: else ->
           if
           :: atomic { ALIVE; RESOLVE(t, i, (pend >> GID(t)) & 1) }
           :: lost < MAXLOST -> lost++; left = left | (1 << t)            /* no answer: next run */
           fi;
           if :: first -> first = false; RECOVERY_CRASH_POINT(recovery_after_first_resolve) :: else fi
        fi
     od;
     first = false;
     /* forget a decision once every RM was verified and scanned and holds none of its branches */
     atomic {
       ALIVE;
       for (t : 0 .. TXS - 1) {
         if
         :: ((pend >> GID(t)) & 1) && ver == (1 << N) - 1 && !((left >> t) & 1) && !(is_tm && t == me && !hsnap) ->
            FORGET(GID(t)); logrec[GID(t)] = false
         :: else
         fi
       };
       t = 0
     }
killed:
     atomic { tool_busy = false; pend = 0; seen = 0; ver = 0; left = 0; x = 0; t = 0; i = 0; first = false; hsnap = false }
  od;
  goto finish;
#else
  /* one run: the termination rule for every prepared branch it may act on (docs/design.md
   * section 7), then the marker rows of finished transactions */
  :: atomic { (!is_tm || live == me) && (ANY_PICKABLE || HAS_ROWS(0) || HAS_ROWS(G - 1)) -> vis = 0 }
     do
     :: atomic { ANY_PICKABLE -> if PICK(0) PICK(1) PICK(2) PICK(3) PICK(4) PICK(5) fi; vis = vis | (1 << x) }
        t = x / N; i = x % N; g = GID(t);
        /* its own log's pre-commit note (three-phase, the TM's own incarnations) */
        r = (is_tm && PROTO == THREE_PC && logrec[g] -> MP : NONE);
        if :: r == MP -> goto act :: else fi;
        r = MK(i, g);                              /* a P on the branch's own RM */
        if :: r == MP -> goto act :: else fi;
#ifndef MUTANT_UNVERIFIED_RM
        if :: w -> goto next :: else fi;           /* not the arbiter's database: unresolved */
#endif
        r = (w -> wrongmk[g] : MK(0, g));          /* the arbiter's row */
        if :: r != NONE -> goto act :: else fi;
        if :: BR(t, i) != PREPARED -> goto next :: else fi;   /* listed again: finished meanwhile */
        /* nobody decided: insert A if absent (behind an uncommitted decision row), follow the winner */
        if
        :: w -> atomic { ALIVE; if :: wrongmk[g] == NONE -> wrongmk[g] = MA :: else fi; r = wrongmk[g] }
        :: !w && PROTO == COMMIT_MARKER && lost < MAXLOST -> lost++; goto next   /* lock wait timeout */
        :: !w -> atomic { !rowlock[g] -> ALIVE; if :: MK(0, g) == NONE -> MK(0, g) = MA :: else fi; r = MK(0, g) }
        fi;
act:
        atomic { ALIVE; RESOLVE(t, i, r == MP) };
next:
        atomic { x = 0; t = 0; i = 0; g = 0; r = 0 }
     :: atomic { !ANY_PICKABLE -> vis = 0; break }
     od;
     /* marker rows of finished transactions: list the rows, then scan; a P row goes once no RM
      * holds a prepared branch of its gtrid; an A row (and a commit-marker P) also only when no
      * session holds its coordinator's lease */
     do
     :: atomic { g < G && !HAS_ROWS(g) -> g++ }
     :: atomic { g == G -> g = 0; break }
     :: atomic { g < G && HAS_ROWS(g) ->
          for (j : 0 .. N - 1) {
            if :: MK(j, g) == MP -> lmp = lmp | (1 << j) :: MK(j, g) == MA -> lma = lma | (1 << j) :: else fi
          };
          j = 0
        }
        for (j : 0 .. N - 1) {
          atomic {
            if
            :: (GID(0) == g && BR(0, j) == PREPARED) || (GID(TXS - 1) == g && BR(TXS - 1, j) == PREPARED) ->
               seen = seen | (1 << j)
            :: else
            fi
          }
        }
        for (j : 0 .. N - 1) {
          atomic {
            ALIVE;
            if
#ifdef MUTANT_EARLY_MARKER_DELETE
            :: ((lmp >> j) & 1) && !((seen >> j) & 1) &&    /* only the RM that holds the row is looked at */
#else
            :: ((lmp >> j) & 1) && seen == 0 &&
#endif
               (PROTO != COMMIT_MARKER || !LEASE_HELD(g)) && !(is_tm && me < TXS && GID(me) == g && !handed[me]) ->
               FORGET(g); MK(j, g) = NONE
            /* an A row: no FORGET check. Its coordinator is gone (no lease), so nobody can write P any
             * more, and a branch still prepared is terminated to A again. (The model found that a
             * prepare in flight when the coordinator died may land after this run's scan: the
             * code's day-long retention is what makes that unlikely, docs/design.md "Model checking") */
            :: ((lma >> j) & 1) && seen == 0 && !LEASE_HELD(g) -> MK(j, g) = NONE
            :: else
            fi
          }
        }
        atomic {
          ALIVE;
          if
          :: is_tm && logrec[g] && seen == 0 && !(me < TXS && GID(me) == g && !handed[me]) -> FORGET(g); logrec[g] = false
          :: else
          fi;
          lmp = 0; lma = 0; seen = 0; j = 0; g++
        }
     od
  od;
#endif
finish:
  skip
}

init {
  byte n;
  atomic {
    run tm(0);
    for (n : 1 .. NTERM) { run recovery(NOINC, 0) }
  }
}
