/*
 * switchboard-store: the only process that touches the database. It has no
 * listeners; it serves the "store" address on the broker. Each IPC_REQUEST
 * is queued; at the end of each burst of broker messages (or when
 * config->store.batch_max requests are queued) the queue runs in one
 * transaction, and the responses go out only after it committed: writes
 * are batched and acknowledged only when durable (see store_ops.c).
 */
#include <stdio.h>
#include <stdlib.h>

#include "shared/log.h"
#include "workers/store_db.h"
#include "workers/worker.h"

struct store_state {
    struct store_db *db;
    struct store_batch *batch;
};

static void store_deinit(struct worker *w)
{
    struct store_state *st = worker_data(w);

    if (st == NULL)
        return;
    /* Requests still queued were never committed nor answered; their
     * senders time out with IPC_CODE_UNAVAILABLE. */
    if (st->batch != NULL && store_batch_pending(st->batch) > 0)
        log_warnx("exiting with %zu unanswered requests", store_batch_pending(st->batch));
    store_batch_free(&st->batch);
    store_db_free(&st->db);
    free(st);
    worker_set_data(w, NULL);
}

/* Why init failed; outlives the db whose message it copies. */
static char store_init_error[512];

/* The skeleton does not call deinit after a failed init: clean up here. */
static int store_init(struct worker *w, const char **error_r)
{
    const struct config *config = worker_config(w);
    struct store_state *st;
    int version;

    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    worker_set_data(w, st);
    st->db = store_db_new(config);
    st->batch = st->db != NULL ? store_batch_new(st->db, (size_t)config->store.batch_max) : NULL;
    if (st->batch == NULL) {
        *error_r = "out of memory";
        store_deinit(w);
        return -1;
    }
    if (store_db_connect(st->db, &version, error_r) < 0) {
        /* A database server that cannot be reached now may be back soon:
         * exit as a crash so that the supervisor retries with backoff.
         * Anything else (bad path, credentials, newer schema) is a
         * configuration error and init's -1 makes the worker exit 78. */
        if (st->db->lost)
            log_fatal(EXIT_FAILURE, "%s", *error_r);
        /* *error_r points into the db, which is about to go. */
        snprintf(store_init_error, sizeof(store_init_error), "%s", *error_r);
        *error_r = store_init_error;
        store_deinit(w);
        return -1;
    }
    log_info("%s database ready, schema version %d, batches of up to %d requests",
             st->db->ops->name, version, config->store.batch_max);
    return 0;
}

static void store_announce(struct worker *w)
{
    struct ipc_writer *wr = worker_ipc_begin(w, IPC_ROUTE_ADD);

    ipc_put_str(wr, IPC_F_ADDRESS, "store");
    worker_ipc_end(w);
}

/* Forwards one committed response to the broker as it was encoded. */
static void store_respond(void *ctx, const struct ipc_msg *response)
{
    struct worker *w = ctx;
    struct ipc_writer *wr = worker_ipc_begin(w, IPC_RESPONSE);

    ipc_put_raw(wr, response->body, response->body_len);
    if (!worker_ipc_end(w))
        log_warnx("response to worker %u request %u could not be sent", response->worker,
                  response->req_id);
}

static void store_ipc_message(struct worker *w, const struct ipc_msg *m)
{
    struct store_state *st = worker_data(w);

    if (m->type != IPC_REQUEST) {
        log_debug("ignoring %s from the broker", ipc_type_name(m->type));
        return;
    }
    /* The frame m points into is only valid during this call: the batch
     * keeps its own copy of what it needs. */
    if (!store_batch_add(st->batch, m))
        return;
    if (store_batch_full(st->batch))
        store_batch_run(st->batch, store_respond, w);
}

static void store_ipc_batch_end(struct worker *w)
{
    struct store_state *st = worker_data(w);

    if (store_batch_pending(st->batch) > 0)
        store_batch_run(st->batch, store_respond, w);
}

static const struct worker_proto store_proto = {
    .kind = SB_WORKER_STORE,
    .init = store_init,
    .deinit = store_deinit,
    .ipc_message = store_ipc_message,
    .ipc_batch_end = store_ipc_batch_end,
    .announce = store_announce,
};

int main(int argc, char **argv)
{
    return worker_main(argc, argv, &store_proto);
}
