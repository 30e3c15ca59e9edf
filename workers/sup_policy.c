/*
 * The restart policy of the supervisor (see sup_policy.h for the rules).
 * Pure: no system calls, no clock, no logging; sup_main.c logs the
 * decisions and carries them out.
 */
#include "workers/sup_policy.h"

#include <stdio.h>
#include <string.h>

void sup_policy_init(struct sup_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->state = SUP_STATE_STOPPED;
    p->ready_ms = -1;
}

void sup_policy_schedule(struct sup_policy *p, int64_t now_ms)
{
    p->state = SUP_STATE_PENDING;
    p->due_ms = now_ms;
    p->restart_after_stop = false;
}

static void clear_history(struct sup_policy *p)
{
    p->crash_head = 0;
    p->n_crash = 0;
    p->backoff_ms = 0;
    p->failed_reason[0] = '\0';
}

bool sup_policy_start(struct sup_policy *p, int64_t now_ms)
{
    if (sup_policy_has_process(p))
        return false;
    clear_history(p);
    sup_policy_schedule(p, now_ms);
    return true;
}

void sup_policy_started(struct sup_policy *p, int64_t now_ms)
{
    p->state = SUP_STATE_STARTING;
    p->started_ms = now_ms;
    p->ready_ms = -1;
    p->restart_after_stop = false;
    p->starts++;
}

void sup_policy_fail(struct sup_policy *p, const char *reason)
{
    p->state = SUP_STATE_FAILED;
    snprintf(p->failed_reason, sizeof(p->failed_reason), "%s", reason);
}

void sup_policy_ready(struct sup_policy *p, int64_t now_ms)
{
    if (p->state == SUP_STATE_STARTING) {
        p->state = SUP_STATE_RUNNING;
        p->ready_ms = now_ms;
    } else if (p->state == SUP_STATE_STOPPING && p->ready_ms < 0) {
        /* Late READY from a worker being stopped: remember it for the
         * stability rule, the state stays STOPPING. */
        p->ready_ms = now_ms;
    }
}

bool sup_policy_has_process(const struct sup_policy *p)
{
    return p->state == SUP_STATE_STARTING || p->state == SUP_STATE_RUNNING ||
           p->state == SUP_STATE_STOPPING;
}

bool sup_policy_stop(struct sup_policy *p, bool restart, int64_t now_ms)
{
    if (sup_policy_has_process(p)) {
        p->state = SUP_STATE_STOPPING;
        p->restart_after_stop = restart;
        return true;
    }
    if (restart) {
        sup_policy_start(p, now_ms);
    } else {
        /* A FAILED worker that is stopped keeps no reason to show. */
        p->state = SUP_STATE_STOPPED;
        p->failed_reason[0] = '\0';
    }
    return false;
}

static int clamp_intensity(const struct sup_policy_params *params)
{
    if (params->intensity < 0)
        return 0;
    if (params->intensity > SUP_POLICY_MAX_INTENSITY)
        return SUP_POLICY_MAX_INTENSITY;
    return params->intensity;
}

#define CRASH_RING (SUP_POLICY_MAX_INTENSITY + 1)

unsigned sup_policy_recent_crashes(const struct sup_policy *p,
                                   const struct sup_policy_params *params, int64_t now_ms)
{
    unsigned n = 0;

    /* Walk back from the newest entry; the ring is in time order. */
    for (unsigned i = 0; i < p->n_crash; i++) {
        unsigned idx = (p->crash_head + CRASH_RING - 1 - i) % CRASH_RING;
        if (now_ms - p->crash_ms[idx] >= params->period_ms)
            break;
        n++;
    }
    return n;
}

static void record_crash(struct sup_policy *p, int64_t now_ms)
{
    p->crash_ms[p->crash_head] = now_ms;
    p->crash_head = (p->crash_head + 1) % CRASH_RING;
    if (p->n_crash < CRASH_RING)
        p->n_crash++;
    p->crashes++;
}

/* The delay for this early death, doubling the one kept for the next. A
 * backoff_min_ms of 0 disables the backoff. */
static int next_backoff(struct sup_policy *p, const struct sup_policy_params *params)
{
    int min = params->backoff_min_ms > 0 ? params->backoff_min_ms : 0;
    int max = params->backoff_max_ms > min ? params->backoff_max_ms : min;
    int delay = p->backoff_ms;

    if (delay < min)
        delay = min;
    if (delay > max)
        delay = max;
    p->backoff_ms = delay > max / 2 ? max : delay * 2;
    return delay;
}

enum sup_exit_action sup_policy_exited(struct sup_policy *p, const struct sup_policy_params *params,
                                       int64_t now_ms, struct sup_exit_status st)
{
    bool was_ready = p->ready_ms >= 0;
    int intensity;

    if (p->state == SUP_STATE_STOPPING) {
        /* The supervisor asked for this exit: not a crash, whatever the status. */
        bool restart = p->restart_after_stop;
        p->state = SUP_STATE_STOPPED;
        p->restart_after_stop = false;
        if (restart) {
            sup_policy_start(p, now_ms);
            return SUP_EXIT_RESTART;
        }
        return SUP_EXIT_STOPPED;
    }

    /* Stable for long enough: the next early death starts the backoff over. */
    if (was_ready && now_ms - p->ready_ms >= SUP_POLICY_STABLE_MS)
        p->backoff_ms = 0;

    if (!st.signaled && st.value == 78) {
        sup_policy_fail(p, "configuration error (exit 78)");
        return SUP_EXIT_FAILED;
    }

    if (!was_ready) {
        p->early_exits++;
        p->state = SUP_STATE_PENDING;
        p->due_ms = now_ms + next_backoff(p, params);
        return SUP_EXIT_BACKOFF;
    }

    record_crash(p, now_ms);
    intensity = clamp_intensity(params);
    if (sup_policy_recent_crashes(p, params, now_ms) > (unsigned)intensity) {
        char reason[SUP_POLICY_REASON_MAX];
        snprintf(reason, sizeof(reason), "crashed %u times within %lld s",
                 sup_policy_recent_crashes(p, params, now_ms),
                 (long long)(params->period_ms / 1000));
        sup_policy_fail(p, reason);
        return SUP_EXIT_FAILED;
    }
    p->state = SUP_STATE_PENDING;
    p->due_ms = now_ms;
    return SUP_EXIT_RESTART;
}

unsigned sup_policy_restarts(const struct sup_policy *p)
{
    return p->starts > 0 ? p->starts - 1 : 0;
}

const char *sup_state_name(const struct sup_policy *p, int64_t now_ms)
{
    switch (p->state) {
    case SUP_STATE_STOPPED:
        return "stopped";
    case SUP_STATE_PENDING:
        return p->due_ms > now_ms ? "backoff" : "starting";
    case SUP_STATE_STARTING:
        return "starting";
    case SUP_STATE_RUNNING:
        return "running";
    case SUP_STATE_STOPPING:
        return "stopping";
    case SUP_STATE_FAILED:
        return "failed";
    }
    return "unknown";
}

/* The broker is expected READY soon: the others should wait for it. */
static bool broker_coming(const struct sup_policy *b)
{
    return b != NULL && (b->state == SUP_STATE_PENDING || b->state == SUP_STATE_STARTING ||
                         (b->state == SUP_STATE_STOPPING && b->restart_after_stop));
}

static void wake_at(int64_t *wake, int64_t t)
{
    if (*wake < 0 || t < *wake)
        *wake = t;
}

unsigned sup_policy_pick(const struct sup_policy *const workers[SB_WORKER_COUNT], int64_t now_ms,
                         int64_t *wake_ms_r, unsigned *late_r)
{
    const struct sup_policy *broker = workers[SB_WORKER_BROKER];
    unsigned start = 0, late = 0;
    int64_t wake = -1;
    bool wait_broker = broker_coming(broker);

    if (broker != NULL && broker->state == SUP_STATE_PENDING) {
        if (broker->due_ms <= now_ms) {
            /* The broker goes alone; the others are reconsidered once it is up. */
            *wake_ms_r = -1;
            *late_r = 0;
            return 1u << SB_WORKER_BROKER;
        }
        wake_at(&wake, broker->due_ms);
    }
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        const struct sup_policy *p = workers[k];
        if (k == SB_WORKER_BROKER || p == NULL || p->state != SUP_STATE_PENDING)
            continue;
        if (p->due_ms > now_ms) {
            wake_at(&wake, p->due_ms);
        } else if (!wait_broker) {
            start |= 1u << k;
        } else if (now_ms >= p->due_ms + SUP_POLICY_BROKER_WAIT_MS) {
            start |= 1u << k;
            late |= 1u << k;
        } else {
            wake_at(&wake, p->due_ms + SUP_POLICY_BROKER_WAIT_MS);
        }
    }
    *wake_ms_r = wake;
    *late_r = late;
    return start;
}
