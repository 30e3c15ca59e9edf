/*
 * Unit tests of the supervisor's restart policy (workers/sup_policy.c):
 * backoff doubling and cap, reset after a stable run, exit 78, the crash
 * intensity limit, operator start, requested stops, and the broker-first
 * start order. Time is an explicit argument, so every case is exact.
 */
#include <signal.h>

#include "tests/unit/check.h"
#include "workers/sup_policy.h"

static const struct sup_policy_params params = {
    .intensity = 3,
    .period_ms = 60000,
    .backoff_min_ms = 100,
    .backoff_max_ms = 1000,
};

static const struct sup_exit_status exit_1 = {false, 1};
static const struct sup_exit_status exit_0 = {false, 0};
static const struct sup_exit_status exit_78 = {false, 78};
static const struct sup_exit_status killed_segv = {true, SIGSEGV};
static const struct sup_exit_status killed_term = {true, SIGTERM};

/* Starts p at t (it must be due) and makes it READY at t + 1. */
static void run_ready(struct sup_policy *p, int64_t t)
{
    sup_policy_started(p, t);
    sup_policy_ready(p, t + 1);
}

static void test_backoff_doubles_and_caps(void)
{
    static const int expected[] = {100, 200, 400, 800, 1000, 1000};
    struct sup_policy p;
    int64_t t = 0;

    sup_policy_init(&p);
    CHECK(p.state == SUP_STATE_STOPPED);
    sup_policy_schedule(&p, t);
    CHECK(p.state == SUP_STATE_PENDING && p.due_ms == 0);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        sup_policy_started(&p, t);
        CHECK(p.state == SUP_STATE_STARTING);
        t += 50;
        CHECK(sup_policy_exited(&p, &params, t, exit_1) == SUP_EXIT_BACKOFF);
        CHECK(p.state == SUP_STATE_PENDING);
        CHECK(p.due_ms - t == expected[i]);
        CHECK_STR(sup_state_name(&p, t), "backoff");
        CHECK_STR(sup_state_name(&p, p.due_ms), "starting");
        t = p.due_ms;
    }
    /* Early deaths are throttled, not counted as crashes: never FAILED. */
    CHECK(p.crashes == 0);
    CHECK(p.early_exits == 6);
    CHECK(sup_policy_restarts(&p) == 5);
}

static void test_backoff_reset_after_stable_run(void)
{
    struct sup_policy p;
    int64_t t = 0;

    sup_policy_init(&p);
    sup_policy_schedule(&p, t);
    for (int i = 0; i < 3; i++) { /* 100, 200, 400 */
        sup_policy_started(&p, t);
        CHECK(sup_policy_exited(&p, &params, t + 10, exit_1) == SUP_EXIT_BACKOFF);
        t = p.due_ms;
    }
    /* Ready, but dies 2 s later: not stable, the backoff goes on from 800. */
    run_ready(&p, t);
    t += 2000;
    CHECK(sup_policy_exited(&p, &params, t, exit_1) == SUP_EXIT_RESTART);
    sup_policy_started(&p, t);
    CHECK(sup_policy_exited(&p, &params, t + 10, exit_1) == SUP_EXIT_BACKOFF);
    CHECK(p.due_ms - (t + 10) == 800);
    t = p.due_ms;

    /* Ready and up for SUP_POLICY_STABLE_MS: the next early death starts over at the minimum. */
    run_ready(&p, t);
    t += 1 + SUP_POLICY_STABLE_MS;
    CHECK(sup_policy_exited(&p, &params, t, killed_segv) == SUP_EXIT_RESTART);
    sup_policy_started(&p, t);
    CHECK(sup_policy_exited(&p, &params, t + 10, exit_1) == SUP_EXIT_BACKOFF);
    CHECK(p.due_ms - (t + 10) == 100);
}

static void test_exit_78_fails(void)
{
    struct sup_policy p;

    /* Before READY. */
    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    sup_policy_started(&p, 0);
    CHECK(sup_policy_exited(&p, &params, 5, exit_78) == SUP_EXIT_FAILED);
    CHECK(p.state == SUP_STATE_FAILED);
    CHECK_STR(p.failed_reason, "configuration error (exit 78)");
    CHECK_STR(sup_state_name(&p, 5), "failed");

    /* After READY (a reload it cannot take, say). */
    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    run_ready(&p, 0);
    CHECK(sup_policy_exited(&p, &params, 30000, exit_78) == SUP_EXIT_FAILED);
    CHECK(p.state == SUP_STATE_FAILED);

    /* A signal numbered 78 is a crash, not a configuration error. */
    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    run_ready(&p, 0);
    CHECK(sup_policy_exited(&p, &params, 30000, (struct sup_exit_status){true, 78}) ==
          SUP_EXIT_RESTART);
}

static void test_intensity_limit(void)
{
    struct sup_policy p;
    int64_t t = 0;

    /* Four crashes within 60 s with intensity 3: the fourth fails it. */
    sup_policy_init(&p);
    sup_policy_schedule(&p, t);
    for (int i = 0; i < 3; i++) {
        run_ready(&p, t);
        t += 1000;
        CHECK(sup_policy_exited(&p, &params, t, i == 1 ? killed_segv : exit_0) == SUP_EXIT_RESTART);
        CHECK(p.state == SUP_STATE_PENDING && p.due_ms == t); /* at once, no backoff */
    }
    CHECK(sup_policy_recent_crashes(&p, &params, t) == 3);
    run_ready(&p, t);
    t += 1000;
    CHECK(sup_policy_exited(&p, &params, t, exit_1) == SUP_EXIT_FAILED);
    CHECK(p.state == SUP_STATE_FAILED);
    CHECK_STR(p.failed_reason, "crashed 4 times within 60 s");
    CHECK(p.crashes == 4);

    /* The same number of crashes spread over time never fails: at most 3 per 60 s. */
    sup_policy_init(&p);
    t = 0;
    sup_policy_schedule(&p, t);
    for (int i = 0; i < 20; i++) {
        run_ready(&p, t);
        t += 20000;
        CHECK(sup_policy_exited(&p, &params, t, killed_segv) == SUP_EXIT_RESTART);
    }
    CHECK(p.state == SUP_STATE_PENDING);
    CHECK(p.crashes == 20);

    /* Just inside the window is still inside; 4 crashes at 0, 20, 40, 59.999 s fail. */
    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    static const int64_t at[] = {1000, 21000, 41000, 60999};
    enum sup_exit_action last = SUP_EXIT_RESTART;
    for (size_t i = 0; i < 4; i++) {
        run_ready(&p, i == 0 ? 0 : at[i - 1]);
        last = sup_policy_exited(&p, &params, at[i], exit_1);
    }
    CHECK(last == SUP_EXIT_FAILED);

    /* Intensity 0: the first crash fails it. */
    struct sup_policy_params strict = params;
    strict.intensity = 0;
    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    run_ready(&p, 0);
    CHECK(sup_policy_exited(&p, &strict, 100000, exit_1) == SUP_EXIT_FAILED);
}

static void test_start_clears_failed(void)
{
    struct sup_policy p;
    int64_t t = 0;

    sup_policy_init(&p);
    sup_policy_schedule(&p, t);
    for (int i = 0; i < 4; i++) {
        run_ready(&p, t);
        t += 10;
        sup_policy_exited(&p, &params, t, exit_1);
    }
    CHECK(p.state == SUP_STATE_FAILED);
    /* Nothing starts a FAILED worker on its own. */
    const struct sup_policy *ws[SB_WORKER_COUNT] = {NULL};
    int64_t wake;
    unsigned late;
    ws[SB_WORKER_XMPP] = &p;
    CHECK(sup_policy_pick(ws, t + 100000, &wake, &late) == 0);
    CHECK(wake == -1);

    CHECK(sup_policy_start(&p, t));
    CHECK(p.state == SUP_STATE_PENDING && p.due_ms == t);
    CHECK(p.failed_reason[0] == '\0');
    CHECK(sup_policy_pick(ws, t, &wake, &late) == 1u << SB_WORKER_XMPP);
    /* The crash history is gone: the next crash restarts it. */
    run_ready(&p, t);
    CHECK(!sup_policy_start(&p, t)); /* has a process */
    t += 10;
    CHECK(sup_policy_exited(&p, &params, t, exit_1) == SUP_EXIT_RESTART);

    /* A failure to spawn is FAILED too, and start clears it the same way. */
    sup_policy_init(&p);
    sup_policy_fail(&p, "binary not found");
    CHECK(p.state == SUP_STATE_FAILED);
    CHECK_STR(p.failed_reason, "binary not found");
    CHECK(sup_policy_start(&p, 5));
    CHECK(p.state == SUP_STATE_PENDING);
}

static void test_requested_stop_is_not_a_crash(void)
{
    struct sup_policy p;

    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    run_ready(&p, 0);
    CHECK(sup_policy_stop(&p, false, 500));
    CHECK(p.state == SUP_STATE_STOPPING);
    CHECK_STR(sup_state_name(&p, 500), "stopping");
    CHECK(sup_policy_exited(&p, &params, 600, killed_term) == SUP_EXIT_STOPPED);
    CHECK(p.state == SUP_STATE_STOPPED);
    CHECK(p.crashes == 0);

    /* Even killed by SIGKILL after the stop timeout, or exiting 78, a requested stop stops. */
    sup_policy_schedule(&p, 1000);
    run_ready(&p, 1000);
    CHECK(sup_policy_stop(&p, false, 1500));
    CHECK(sup_policy_exited(&p, &params, 2000, (struct sup_exit_status){true, SIGKILL}) ==
          SUP_EXIT_STOPPED);
    CHECK(p.crashes == 0);

    /* A requested restart: PENDING at once, still not a crash. */
    sup_policy_schedule(&p, 3000);
    sup_policy_started(&p, 3000); /* not even READY yet */
    CHECK(sup_policy_stop(&p, true, 3100));
    CHECK(sup_policy_exited(&p, &params, 3200, killed_term) == SUP_EXIT_RESTART);
    CHECK(p.state == SUP_STATE_PENDING && p.due_ms == 3200);
    CHECK(p.crashes == 0 && p.early_exits == 0);

    /* Without a process: stop is immediate, restart makes it due now. */
    CHECK(!sup_policy_stop(&p, false, 4000));
    CHECK(p.state == SUP_STATE_STOPPED);
    CHECK(!sup_policy_stop(&p, true, 4100));
    CHECK(p.state == SUP_STATE_PENDING && p.due_ms == 4100);

    /* The same exit without a request is a crash. */
    run_ready(&p, 5000);
    CHECK(sup_policy_exited(&p, &params, 6000, killed_term) == SUP_EXIT_RESTART);
    CHECK(p.crashes == 1);
}

static void test_broker_first(void)
{
    struct sup_policy w[SB_WORKER_COUNT];
    const struct sup_policy *ws[SB_WORKER_COUNT];
    int64_t wake;
    unsigned late, start;

    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        sup_policy_init(&w[k]);
        ws[k] = &w[k];
    }
    ws[SB_WORKER_SIP] = NULL; /* not managed */

    /* First start: everything due; only the broker goes. */
    sup_policy_schedule(&w[SB_WORKER_BROKER], 0);
    sup_policy_schedule(&w[SB_WORKER_STORE], 0);
    sup_policy_schedule(&w[SB_WORKER_XMPP], 0);
    start = sup_policy_pick(ws, 0, &wake, &late);
    CHECK(start == 1u << SB_WORKER_BROKER);
    CHECK(late == 0);

    /* Broker starting: the others wait, wake at the deadline. */
    sup_policy_started(&w[SB_WORKER_BROKER], 0);
    start = sup_policy_pick(ws, 10, &wake, &late);
    CHECK(start == 0);
    CHECK(wake == SUP_POLICY_BROKER_WAIT_MS);

    /* Broker READY: the others start together. */
    sup_policy_ready(&w[SB_WORKER_BROKER], 300);
    start = sup_policy_pick(ws, 300, &wake, &late);
    CHECK(start == ((1u << SB_WORKER_STORE) | (1u << SB_WORKER_XMPP)));
    CHECK(late == 0);
    CHECK(wake == -1);
    sup_policy_started(&w[SB_WORKER_STORE], 300);
    sup_policy_started(&w[SB_WORKER_XMPP], 300);

    /* Broker and store crash at the same moment: the broker first, the store waits for it. */
    sup_policy_ready(&w[SB_WORKER_STORE], 400);
    sup_policy_ready(&w[SB_WORKER_XMPP], 400);
    CHECK(sup_policy_exited(&w[SB_WORKER_STORE], &params, 20000, killed_segv) == SUP_EXIT_RESTART);
    CHECK(sup_policy_exited(&w[SB_WORKER_BROKER], &params, 20000, killed_segv) == SUP_EXIT_RESTART);
    start = sup_policy_pick(ws, 20000, &wake, &late);
    CHECK(start == 1u << SB_WORKER_BROKER);
    sup_policy_started(&w[SB_WORKER_BROKER], 20000);
    start = sup_policy_pick(ws, 20001, &wake, &late);
    CHECK(start == 0);
    CHECK(wake == 20000 + SUP_POLICY_BROKER_WAIT_MS);

    /* The broker never says READY: the store starts at the deadline, flagged late. */
    start = sup_policy_pick(ws, 20000 + SUP_POLICY_BROKER_WAIT_MS, &wake, &late);
    CHECK(start == 1u << SB_WORKER_STORE);
    CHECK(late == 1u << SB_WORKER_STORE);
    sup_policy_started(&w[SB_WORKER_STORE], 25000);

    /* A broker in backoff holds the others back too, and its due time is a wake-up. */
    CHECK(sup_policy_exited(&w[SB_WORKER_BROKER], &params, 26000, exit_1) == SUP_EXIT_BACKOFF);
    CHECK(sup_policy_exited(&w[SB_WORKER_XMPP], &params, 26000, exit_1) == SUP_EXIT_RESTART);
    start = sup_policy_pick(ws, 26000, &wake, &late);
    CHECK(start == 0);
    CHECK(wake == 26000 + params.backoff_min_ms);
    start = sup_policy_pick(ws, 26000 + params.backoff_min_ms, &wake, &late);
    CHECK(start == 1u << SB_WORKER_BROKER);

    /* A broker being restarted on request also holds the others back. */
    sup_policy_started(&w[SB_WORKER_BROKER], 26100);
    sup_policy_ready(&w[SB_WORKER_BROKER], 26200);
    CHECK(sup_policy_stop(&w[SB_WORKER_BROKER], true, 26300));
    start = sup_policy_pick(ws, 26300, &wake, &late);
    CHECK(start == 0);

    /* A FAILED (or stopped) broker holds nothing back. */
    sup_policy_fail(&w[SB_WORKER_BROKER], "binary not found");
    start = sup_policy_pick(ws, 26400, &wake, &late);
    CHECK(start == 1u << SB_WORKER_XMPP);
    CHECK(late == 0);

    /* A worker in backoff is a wake-up time, not a start. */
    sup_policy_started(&w[SB_WORKER_XMPP], 26400);
    CHECK(sup_policy_exited(&w[SB_WORKER_XMPP], &params, 26500, exit_1) == SUP_EXIT_BACKOFF);
    start = sup_policy_pick(ws, 26500, &wake, &late);
    CHECK(start == 0);
    CHECK(wake == w[SB_WORKER_XMPP].due_ms && wake > 26500);
}

static void test_intensity_clamped(void)
{
    struct sup_policy p;
    struct sup_policy_params big = params;
    enum sup_exit_action a = SUP_EXIT_RESTART;
    int n = 0;

    big.intensity = 1000000;
    sup_policy_init(&p);
    sup_policy_schedule(&p, 0);
    while (a == SUP_EXIT_RESTART && n < 1000) {
        run_ready(&p, n);
        a = sup_policy_exited(&p, &big, n + 1, exit_1);
        n++;
    }
    CHECK(a == SUP_EXIT_FAILED);
    CHECK(n == SUP_POLICY_MAX_INTENSITY + 1);
}

int main(void)
{
    test_backoff_doubles_and_caps();
    test_backoff_reset_after_stable_run();
    test_exit_78_fails();
    test_intensity_limit();
    test_start_clears_failed();
    test_requested_stop_is_not_a_crash();
    test_broker_first();
    test_intensity_clamped();
    return check_result("test_sup_policy");
}
