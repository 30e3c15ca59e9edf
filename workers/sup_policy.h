/*
 * The supervisor's restart policy, as pure functions over one struct per
 * worker. Nothing here makes a system call or reads a clock: every function
 * takes the current time (milliseconds on any monotonic scale) as an
 * argument, so the whole policy is unit-tested (tests/unit/test_sup_policy.c)
 * and sup_main.c only carries out its decisions.
 *
 * The rules (see also ../shared/DESIGN.md, "Restart policy"):
 *  - A worker exiting with 78 (EX_CONFIG) is "failed": a configuration
 *    error that a restart would only repeat.
 *  - A worker that dies before it reported READY is restarted after a
 *    backoff that doubles from backoff_min_ms up to backoff_max_ms, as
 *    Postfix throttles a service that dies before its first job. Such early
 *    deaths are not counted against the intensity limit: a worker that cannot
 *    come up (say, its database is down) keeps being retried, slowly.
 *  - The backoff goes back to backoff_min_ms once the worker has stayed up
 *    SUP_POLICY_STABLE_MS after READY.
 *  - A worker that dies after READY (any exit status or signal, other than
 *    a stop the supervisor asked for) crashed: it is restarted at once.
 *    More than `intensity` crashes within `period_ms` marks it "failed"; the
 *    other workers keep running.
 *  - An operator's start (or restart) clears "failed", the crash history
 *    and the backoff.
 *  - The broker starts first: when it is due, nothing else starts in the
 *    same turn, and the others wait until it is READY again, for at most
 *    SUP_POLICY_BROKER_WAIT_MS past their own due time.
 */
#ifndef SB_SUP_POLICY_H
#define SB_SUP_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/config.h"

/* Uptime after READY from which a worker counts as stable and its backoff is reset. */
#define SUP_POLICY_STABLE_MS 10000
/* The longest the other workers wait for the broker to be READY before they start anyway. */
#define SUP_POLICY_BROKER_WAIT_MS 5000
/* The largest restart_intensity honoured; larger values are clamped (the crash history is a
 * fixed ring of this many + 1 entries). */
#define SUP_POLICY_MAX_INTENSITY 100
/* Longest failure reason kept. */
#define SUP_POLICY_REASON_MAX 96

enum sup_state {
    SUP_STATE_STOPPED,  /* not running, and not to be started */
    SUP_STATE_PENDING,  /* to be started at due_ms (a backoff, or waiting for the broker) */
    SUP_STATE_STARTING, /* process running, READY not yet seen */
    SUP_STATE_RUNNING,  /* process running and READY */
    SUP_STATE_STOPPING, /* SIGTERM sent on the supervisor's request; waiting for the exit */
    SUP_STATE_FAILED,   /* not restarted until an operator's start or a changed configuration */
};

struct sup_policy_params {
    int intensity;      /* crashes allowed ... */
    int64_t period_ms;  /* ... within this window */
    int backoff_min_ms; /* first delay after a death before READY */
    int backoff_max_ms; /* cap of the doubling */
};

struct sup_policy {
    enum sup_state state;
    /* STOPPING: start again once the process has exited (restart, reload). */
    bool restart_after_stop;
    /* PENDING: the earliest time the worker may start. */
    int64_t due_ms;
    /* The current (or last) process: when it started, and when it said READY (-1: not yet). */
    int64_t started_ms;
    int64_t ready_ms;
    /* The delay applied to the next death before READY. 0 until first used. */
    int backoff_ms;
    /* Times of the most recent crashes after READY, a ring. */
    int64_t crash_ms[SUP_POLICY_MAX_INTENSITY + 1];
    unsigned crash_head, n_crash;
    /* Lifetime counters, for status and stats. */
    unsigned starts;
    unsigned crashes;
    unsigned early_exits;
    /* FAILED: why, for status ("configuration error (exit 78)"...). */
    char failed_reason[SUP_POLICY_REASON_MAX];
};

/* What sup_policy_exited() decided. */
enum sup_exit_action {
    SUP_EXIT_STOPPED, /* a requested stop: stays stopped */
    SUP_EXIT_RESTART, /* restart now (a crash, or a requested restart) */
    SUP_EXIT_BACKOFF, /* died before READY: restart at due_ms */
    SUP_EXIT_FAILED,  /* exit 78 or too many crashes: see failed_reason */
};

/* How a process ended: exit code, or the signal that killed it. */
struct sup_exit_status {
    bool signaled;
    int value;
};

/* A worker that is not running and not wanted (state STOPPED). */
void sup_policy_init(struct sup_policy *p);
/* Wants the worker started at now_ms (first start, a newly enabled worker):
 * PENDING, due now. Does not clear FAILED history; see sup_policy_start. */
void sup_policy_schedule(struct sup_policy *p, int64_t now_ms);
/* An operator's start: clears FAILED, the crash history and the backoff,
 * and makes the worker PENDING, due now. Only for a worker without a
 * process (STOPPED, PENDING, FAILED); returns false otherwise. */
bool sup_policy_start(struct sup_policy *p, int64_t now_ms);
/* The process was spawned: STARTING. */
void sup_policy_started(struct sup_policy *p, int64_t now_ms);
/* The process could not be spawned at all (no binary): FAILED with reason. */
void sup_policy_fail(struct sup_policy *p, const char *reason);
/* The worker reported READY: RUNNING (ignored unless STARTING). */
void sup_policy_ready(struct sup_policy *p, int64_t now_ms);
/* The supervisor asks the worker to stop; restart: start it again once it
 * has exited. Returns true when there is a process to signal (the state is
 * now STOPPING), false when there was none (the state is now STOPPED, or
 * PENDING due now when restart is set). */
bool sup_policy_stop(struct sup_policy *p, bool restart, int64_t now_ms);
/* The process exited with status st at now_ms: applies the rules above and
 * returns the decision; the state, due_ms and failed_reason are updated. */
enum sup_exit_action sup_policy_exited(struct sup_policy *p, const struct sup_policy_params *params,
                                       int64_t now_ms, struct sup_exit_status st);
/* Whether a process exists (STARTING, RUNNING, STOPPING). */
bool sup_policy_has_process(const struct sup_policy *p);
/* Automatic restarts and operator restarts: starts after the first. */
unsigned sup_policy_restarts(const struct sup_policy *p);
/* Crashes recorded within the period ending at now_ms. */
unsigned sup_policy_recent_crashes(const struct sup_policy *p,
                                   const struct sup_policy_params *params, int64_t now_ms);

/* "starting", "running", "backoff", "stopped", "stopping", "failed". A PENDING
 * worker shows as "backoff" while its due time is ahead, as "starting" once it
 * is only waiting for its turn. */
const char *sup_state_name(const struct sup_policy *p, int64_t now_ms);

/*
 * Which workers to start now. workers[] is indexed by enum sb_worker_kind;
 * NULL entries (workers the supervisor does not manage) are skipped.
 * Returns a bitmask (1u << kind) of the PENDING workers to spawn at now_ms:
 *  - the broker alone when it is due;
 *  - otherwise every due worker, unless the broker is on its way up
 *    (PENDING, STARTING, or STOPPING to restart), in which case a worker
 *    waits until it is SUP_POLICY_BROKER_WAIT_MS past its own due time; the
 *    ones started that way are also set in *late_r (for a warning).
 * *wake_ms_r is set to the earliest later time at which calling this again
 * may start something, or -1 when only an event (READY, an exit, a command)
 * can change the answer.
 */
unsigned sup_policy_pick(const struct sup_policy *const workers[SB_WORKER_COUNT], int64_t now_ms,
                         int64_t *wake_ms_r, unsigned *late_r);

#endif
