/*
 * The store's request layer: what switchboard-store does with each
 * IPC_REQUEST, above the backend interface of store_db.h.
 *
 * Ops (arguments in ARG order; the answer is CODE plus ARGs):
 *   account.register   user, domain, password  OK | CONFLICT | BAD_REQUEST
 *   account.unregister user, domain            OK | NOT_FOUND | BAD_REQUEST
 *   account.passwd     user, domain, password  OK | NOT_FOUND | BAD_REQUEST
 *   account.list       domain                  OK + one ARG per username, sorted (REASON
 *                                              "truncated: ..." when they do not all fit
 *                                              one response) | BAD_REQUEST
 *   account.get        user, domain            OK + salt, iterations (decimal), SCRAM-SHA-1
 *                                              StoredKey, ServerKey, SCRAM-SHA-256 StoredKey,
 *                                              ServerKey (raw), HA1 MD5, HA1 SHA-256 (hex)
 *                                              | NOT_FOUND | BAD_REQUEST
 *   account.count      (none)                  OK + total accounts (decimal)
 *   store.ping         (none)                  OK
 * An unknown op or a wrong number of arguments is BAD_REQUEST, and so are
 * an invalid username (store_username_normalize), a domain that is not one
 * of the configured hosts, and a password that is empty, longer than
 * AUTH_MAX_PASSWORD bytes or holds ASCII control characters. A database
 * failure is INTERNAL for every request of the batch.
 *
 * Writes are batched, and acknowledged only when durable. Requests are
 * queued as they arrive (store_batch_add copies what it needs, validates,
 * and derives password secrets at once, so no clear password is kept).
 * At the end of each burst of broker messages, or when the queue is full,
 * store_batch_run executes all queued requests in ONE transaction and
 * COMMITs; only after the COMMIT succeeded are the responses handed out. If
 * anything fails at the database level (or the COMMIT itself), the
 * transaction is rolled back and every request of the batch is answered
 * INTERNAL: nothing was acknowledged that is not on disk, and nothing on
 * disk was left half-done. One request's own failure (the account exists,
 * is not there) is not a database failure: each write is a single
 * statement, and both backends undo only the failing statement on a
 * key conflict, so the other requests of the batch go on.
 *
 * One fsync then covers a whole batch, which is what lets the store keep up
 * with bursts of registrations and logins.
 */
#include "workers/store_db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"

#define BIT(tag) (UINT64_C(1) << (tag))

/* A transaction is cut short (committed, answered, and the rest run in the
 * next one) once its responses fill this much of a frame, so that the
 * next response, at most IPC_MAX_MESSAGE, always fits. */
#define STORE_BATCH_CUT (IPC_MAX_FRAME - IPC_MAX_MESSAGE - (64u << 10))
/* The ARGs of one account.list response, headers included; a longer list
 * is cut, and the response's REASON says "truncated: ..." so that no caller
 * mistakes it for whole. */
#define STORE_MAX_LIST_BYTES (IPC_MAX_MESSAGE - (64u << 10))
/* Most arguments of any op. */
#define STORE_MAX_ARGS 3
/* How often a closed database is tried again while it stays unreachable:
 * a connection attempt can block the store for the connect timeout. */
#define STORE_RECONNECT_INTERVAL_S 1

enum store_op {
    OP_REGISTER,
    OP_UNREGISTER,
    OP_PASSWD,
    OP_LIST,
    OP_GET,
    OP_COUNT,
    OP_PING,
    OP_REJECTED /* answered without touching the database */
};

static const struct {
    const char *name;
    enum store_op op;
    uint32_t n_args;
} store_op_table[] = {
    {"account.register", OP_REGISTER, 3}, {"account.unregister", OP_UNREGISTER, 2},
    {"account.passwd", OP_PASSWD, 3},     {"account.list", OP_LIST, 1},
    {"account.get", OP_GET, 2},           {"account.count", OP_COUNT, 0},
    {"store.ping", OP_PING, 0},
};

/* One queued request: everything needed to run and answer it, copied out
 * of the frame it came in. */
struct store_request {
    uint32_t worker, req_id;
    enum store_op op;
    uint32_t code;      /* OP_REJECTED: the answer */
    const char *reason; /* OP_REJECTED: a static string */
    const char *domain; /* one of config->hosts */
    char user[STORE_MAX_USERNAME + 1];
    struct auth_secrets secrets; /* register, passwd */
};

struct store_batch {
    struct store_db *db;
    struct store_request *reqs;
    size_t n, max;
    unsigned iterations;
    time_t next_connect; /* while the database is closed: earliest retry */
    /* The responses of the running transaction, held back until COMMIT. */
    struct ipc_writer out;
    /* account.list results: (u32 length, bytes) records. */
    uint8_t *list;
    size_t list_len, list_cap, list_count;
    bool list_full;
};

/* --- the database handle --- */

struct store_db *store_db_new(const struct config *config)
{
    struct store_db *db = calloc(1, sizeof(*db));

    if (db == NULL)
        return NULL;
    db->config = config;
    db->ops = config->store.backend == CONFIG_BACKEND_MYSQL ? &store_mysql_ops : &store_sqlite_ops;
    return db;
}

void store_db_free(struct store_db **db)
{
    if (*db == NULL)
        return;
    (*db)->ops->close(*db);
    free(*db);
    *db = NULL;
}

int store_db_connect(struct store_db *db, int *version_r, const char **error_r)
{
    int version;
    bool lost;

    db->ops->close(db);
    if (db->ops->open(db, error_r) < 0)
        return -1;
    if (db->ops->migrate(db, &version, error_r) < 0) {
        lost = db->lost;
        db->ops->close(db);
        db->lost = lost;
        return -1;
    }
    if (version_r != NULL)
        *version_r = version;
    return 0;
}

static bool is_hex(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    }
    return true;
}

enum store_status store_account_from_row(struct store_account *account_r,
                                         const struct store_column cols[STORE_COL_COUNT],
                                         int64_t iterations, int64_t created)
{
    struct auth_secrets *s = &account_r->secrets;
    static const size_t want[STORE_COL_COUNT] = {
        [STORE_COL_SHA1_STORED] = AUTH_SHA1_LEN,     [STORE_COL_SHA1_SERVER] = AUTH_SHA1_LEN,
        [STORE_COL_SHA256_STORED] = AUTH_SHA256_LEN, [STORE_COL_SHA256_SERVER] = AUTH_SHA256_LEN,
        [STORE_COL_HA1_MD5] = AUTH_HA1_MD5_HEX,      [STORE_COL_HA1_SHA256] = AUTH_HA1_SHA256_HEX,
    };

    memset(account_r, 0, sizeof(*account_r));
    for (int i = 0; i < STORE_COL_COUNT; i++) {
        if (cols[i].ptr == NULL && cols[i].len > 0)
            return STORE_INVALID;
        if (i != STORE_COL_SALT && cols[i].len != want[i])
            return STORE_INVALID;
    }
    if (cols[STORE_COL_SALT].len == 0 || cols[STORE_COL_SALT].len > AUTH_MAX_SALT ||
        iterations < 1 || iterations > AUTH_MAX_ITERATIONS ||
        !is_hex(cols[STORE_COL_HA1_MD5].ptr, AUTH_HA1_MD5_HEX) ||
        !is_hex(cols[STORE_COL_HA1_SHA256].ptr, AUTH_HA1_SHA256_HEX))
        return STORE_INVALID;
    memcpy(s->salt, cols[STORE_COL_SALT].ptr, cols[STORE_COL_SALT].len);
    s->salt_len = cols[STORE_COL_SALT].len;
    s->iterations = (unsigned)iterations;
    memcpy(s->sha1_stored_key, cols[STORE_COL_SHA1_STORED].ptr, AUTH_SHA1_LEN);
    memcpy(s->sha1_server_key, cols[STORE_COL_SHA1_SERVER].ptr, AUTH_SHA1_LEN);
    memcpy(s->sha256_stored_key, cols[STORE_COL_SHA256_STORED].ptr, AUTH_SHA256_LEN);
    memcpy(s->sha256_server_key, cols[STORE_COL_SHA256_SERVER].ptr, AUTH_SHA256_LEN);
    memcpy(s->ha1_md5, cols[STORE_COL_HA1_MD5].ptr, AUTH_HA1_MD5_HEX);
    memcpy(s->ha1_sha256, cols[STORE_COL_HA1_SHA256].ptr, AUTH_HA1_SHA256_HEX);
    account_r->created = created;
    return STORE_OK;
}

/* --- names --- */

/* Decodes one UTF-8 sequence strictly (no overlong forms, surrogates or
 * code points above U+10FFFF). Returns its length, or 0 when invalid. */
static size_t utf8_decode(const uint8_t *p, size_t len, uint32_t *cp_r)
{
    uint32_t cp, min;
    size_t n;

    if (p[0] < 0x80) {
        *cp_r = p[0];
        return 1;
    }
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2, cp = p[0] & 0x1f, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3, cp = p[0] & 0x0f, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4, cp = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *cp_r = cp;
    return n;
}

/* Unicode White_Space, less what the control check already refuses. */
static bool is_unicode_space(uint32_t cp)
{
    return cp == 0x20 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

int store_username_normalize(const void *name, size_t len, char *out, const char **error_r)
{
    const uint8_t *p = name;
    size_t i = 0;

    if (len == 0) {
        *error_r = "empty username";
        return -1;
    }
    if (len > STORE_MAX_USERNAME) {
        *error_r = "username too long";
        return -1;
    }
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);

        if (n == 0) {
            *error_r = "username is not valid UTF-8";
            return -1;
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            *error_r = "control character in username";
            return -1;
        }
        if (is_unicode_space(cp)) {
            *error_r = "whitespace in username";
            return -1;
        }
        if (cp < 0x80 && strchr("\"&'/:<>@", (int)cp) != NULL) {
            *error_r = "forbidden character in username";
            return -1;
        }
        if (cp >= 'A' && cp <= 'Z')
            out[i] = (char)(cp - 'A' + 'a');
        else
            memcpy(out + i, p + i, n);
        i += n;
    }
    out[len] = '\0';
    return (int)len;
}

const char *store_domain_lookup(const struct config *config, const void *name, size_t len)
{
    const uint8_t *p = name;

    if (len == 0 || len > STORE_MAX_DOMAIN)
        return NULL;
    for (size_t h = 0; h < config->n_hosts; h++) {
        const char *host = config->hosts[h];
        size_t i;

        if (strlen(host) != len)
            continue;
        for (i = 0; i < len; i++) {
            uint8_t c = p[i] >= 'A' && p[i] <= 'Z' ? (uint8_t)(p[i] - 'A' + 'a') : p[i];
            if (c != (uint8_t)host[i])
                break;
        }
        if (i == len)
            return host;
    }
    return NULL;
}

/* --- queueing --- */

struct store_batch *store_batch_new(struct store_db *db, size_t max)
{
    struct store_batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->max = max > 0 ? max : 1;
    b->reqs = calloc(b->max, sizeof(*b->reqs));
    if (b->reqs == NULL) {
        free(b);
        return NULL;
    }
    b->db = db;
    b->iterations = AUTH_DEFAULT_ITERATIONS;
    ipc_writer_init(&b->out);
    return b;
}

void store_batch_free(struct store_batch **batch)
{
    struct store_batch *b = *batch;

    if (b == NULL)
        return;
    auth_wipe(b->reqs, b->max * sizeof(*b->reqs));
    free(b->reqs);
    ipc_writer_free(&b->out);
    free(b->list);
    free(b);
    *batch = NULL;
}

void store_batch_set_iterations(struct store_batch *batch, unsigned iterations)
{
    batch->iterations = iterations;
}

size_t store_batch_pending(const struct store_batch *batch)
{
    return batch->n;
}

bool store_batch_full(const struct store_batch *batch)
{
    return batch->n >= batch->max;
}

static void reject(struct store_request *r, uint32_t code, const char *reason)
{
    r->op = OP_REJECTED;
    r->code = code;
    r->reason = reason;
}

/* Validates the user (args[0]) and domain (args[1]) of an account op. */
static bool take_account(struct store_batch *b, struct store_request *r,
                         const struct ipc_slice *args)
{
    const char *error;

    if (store_username_normalize(args[0].ptr, args[0].len, r->user, &error) < 0) {
        reject(r, IPC_CODE_BAD_REQUEST, error);
        return false;
    }
    r->domain = store_domain_lookup(b->db->config, args[1].ptr, args[1].len);
    if (r->domain == NULL) {
        reject(r, IPC_CODE_BAD_REQUEST, "unknown domain");
        return false;
    }
    return true;
}

/* Checks a new password and derives its secrets into r->secrets. The
 * password's bytes are read from the frame and not copied anywhere. */
static void take_password(struct store_batch *b, struct store_request *r, struct ipc_slice pw)
{
    const char *error;

    if (pw.len == 0) {
        reject(r, IPC_CODE_BAD_REQUEST, "empty password");
        return;
    }
    if (pw.len > AUTH_MAX_PASSWORD) {
        reject(r, IPC_CODE_BAD_REQUEST, "password too long");
        return;
    }
    /* RFC 8265 OpaqueString refuses control characters; a NUL would also
     * make the password unusable from C clients and SASL. */
    for (uint32_t i = 0; i < pw.len; i++) {
        if (pw.ptr[i] < 0x20 || pw.ptr[i] == 0x7f) {
            reject(r, IPC_CODE_BAD_REQUEST, "control character in password");
            return;
        }
    }
    if (auth_secrets_derive(&r->secrets, r->user, r->domain, pw.ptr, pw.len, b->iterations,
                            &error) < 0) {
        log_error("deriving secrets: %s", error);
        reject(r, IPC_CODE_INTERNAL, "key derivation failed");
    }
}

bool store_batch_add(struct store_batch *b, const struct ipc_msg *m)
{
    struct ipc_slice args[STORE_MAX_ARGS];
    struct store_request *r;
    uint32_t offset = 0, n = 0;
    size_t i;

    if (m->type != IPC_REQUEST) {
        log_warnx("%s is not a request; dropped", ipc_type_name(m->type));
        return false;
    }
    if (!(m->present & BIT(IPC_F_WORKER))) {
        log_warnx("request %" PRIu32 " without a requester (WORKER); dropped", m->req_id);
        return false;
    }
    if (b->n >= b->max) {
        log_warnx("batch full; request %" PRIu32 " dropped", m->req_id);
        return false;
    }
    r = &b->reqs[b->n++];
    r->worker = m->worker;
    r->req_id = m->req_id;
    r->domain = NULL;
    r->user[0] = '\0';

    for (i = 0; i < sizeof(store_op_table) / sizeof(store_op_table[0]); i++) {
        if (ipc_slice_eq(m->op, store_op_table[i].name))
            break;
    }
    if (i == sizeof(store_op_table) / sizeof(store_op_table[0])) {
        char sample[64];
        log_debug("unknown op \"%s\" from worker %" PRIu32,
                  log_sample(sample, sizeof(sample), m->op.ptr, m->op.len), m->worker);
        reject(r, IPC_CODE_BAD_REQUEST, "unknown op");
        return true;
    }
    r->op = store_op_table[i].op;
    if (m->n_arg != store_op_table[i].n_args) {
        reject(r, IPC_CODE_BAD_REQUEST, "wrong number of arguments");
        return true;
    }
    while (n < STORE_MAX_ARGS && ipc_msg_each(m, IPC_F_ARG, &offset, &args[n]) == 1)
        n++;
    if (n != m->n_arg) {
        reject(r, IPC_CODE_BAD_REQUEST, "wrong number of arguments");
        return true;
    }

    switch (r->op) {
    case OP_REGISTER:
    case OP_PASSWD:
        if (take_account(b, r, args))
            take_password(b, r, args[2]);
        break;
    case OP_UNREGISTER:
    case OP_GET:
        take_account(b, r, args);
        break;
    case OP_LIST:
        r->domain = store_domain_lookup(b->db->config, args[0].ptr, args[0].len);
        if (r->domain == NULL)
            reject(r, IPC_CODE_BAD_REQUEST, "unknown domain");
        break;
    case OP_COUNT:
    case OP_PING:
    case OP_REJECTED:
        break;
    }
    return true;
}

/* --- running --- */

static void response_begin(struct store_batch *b, const struct store_request *r, uint32_t code,
                           const char *reason)
{
    ipc_msg_begin(&b->out, IPC_RESPONSE);
    ipc_put_u32(&b->out, IPC_F_WORKER, r->worker);
    ipc_put_u32(&b->out, IPC_F_REQ_ID, r->req_id);
    ipc_put_u32(&b->out, IPC_F_CODE, code);
    if (reason != NULL)
        ipc_put_str(&b->out, IPC_F_REASON, reason);
}

static void response_end(struct store_batch *b, const struct store_request *r)
{
    if (ipc_msg_end(&b->out))
        return;
    /* Cannot happen with the bounds above; answer rather than go silent. */
    log_error("response to request %" PRIu32 " could not be encoded", r->req_id);
    response_begin(b, r, IPC_CODE_INTERNAL, "response too large");
    ipc_msg_end(&b->out);
}

static void respond_simple(struct store_batch *b, const struct store_request *r, uint32_t code,
                           const char *reason)
{
    response_begin(b, r, code, reason);
    response_end(b, r);
}

static void respond_decimal(struct store_batch *b, const struct store_request *r, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);

    response_begin(b, r, IPC_CODE_OK, NULL);
    ipc_put_bytes(&b->out, IPC_F_ARG, num, (size_t)n);
    response_end(b, r);
}

static void respond_account(struct store_batch *b, const struct store_request *r,
                            const struct store_account *a)
{
    const struct auth_secrets *s = &a->secrets;
    char num[24];
    int n = snprintf(num, sizeof(num), "%u", s->iterations);

    response_begin(b, r, IPC_CODE_OK, NULL);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->salt, s->salt_len);
    ipc_put_bytes(&b->out, IPC_F_ARG, num, (size_t)n);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->sha1_stored_key, AUTH_SHA1_LEN);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->sha1_server_key, AUTH_SHA1_LEN);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->sha256_stored_key, AUTH_SHA256_LEN);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->sha256_server_key, AUTH_SHA256_LEN);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->ha1_md5, AUTH_HA1_MD5_HEX);
    ipc_put_bytes(&b->out, IPC_F_ARG, s->ha1_sha256, AUTH_HA1_SHA256_HEX);
    response_end(b, r);
}

static bool list_collect(void *ctx, const char *name, size_t len)
{
    struct store_batch *b = ctx;
    size_t need = 4 + len;

    /* In the response each name costs its bytes plus an ARG header, one
     * byte more than its record here. */
    if (len > STORE_MAX_USERNAME || b->list_len + b->list_count + need + 1 > STORE_MAX_LIST_BYTES) {
        b->list_full = true;
        return false;
    }
    if (b->list_len + need > b->list_cap) {
        size_t cap = b->list_cap > 0 ? b->list_cap : 4096;
        uint8_t *p;

        while (cap < b->list_len + need)
            cap *= 2;
        p = realloc(b->list, cap);
        if (p == NULL) {
            b->list_full = true;
            return false;
        }
        b->list = p;
        b->list_cap = cap;
    }
    uint32_t l = (uint32_t)len;
    memcpy(b->list + b->list_len, &l, 4);
    memcpy(b->list + b->list_len + 4, name, len);
    b->list_len += need;
    b->list_count++;
    return true;
}

static void respond_list(struct store_batch *b, const struct store_request *r)
{
    size_t pos = 0;

    /* A list that does not fit one response is cut, and says so in the
     * REASON (switchboardctl prints it as a note). */
    response_begin(b, r, IPC_CODE_OK,
                   b->list_full ? "truncated: more accounts than fit one response" : NULL);
    while (pos < b->list_len) {
        uint32_t len;
        memcpy(&len, b->list + pos, 4);
        ipc_put_bytes(&b->out, IPC_F_ARG, b->list + pos + 4, len);
        pos += 4 + len;
    }
    response_end(b, r);
}

/* The answer to a per-request status; false for a database failure. */
static bool respond_status(struct store_batch *b, const struct store_request *r,
                           enum store_status status)
{
    switch (status) {
    case STORE_OK:
        respond_simple(b, r, IPC_CODE_OK, NULL);
        return true;
    case STORE_NOT_FOUND:
        respond_simple(b, r, IPC_CODE_NOT_FOUND, "no such account");
        return true;
    case STORE_CONFLICT:
        respond_simple(b, r, IPC_CODE_CONFLICT, "account exists");
        return true;
    case STORE_INVALID:
        log_error("account %s@%s: stored values are malformed", r->user, r->domain);
        respond_simple(b, r, IPC_CODE_INTERNAL, "stored account is malformed");
        return true;
    case STORE_FAILED:
        break;
    }
    return false;
}

/* Runs one request inside the open transaction and appends its response.
 * -1 on a database failure: the transaction must be rolled back. */
static int execute(struct store_batch *b, const struct store_request *r, const char **error_r)
{
    struct store_db *db = b->db;
    struct store_account account;
    enum store_status status;
    uint64_t count;

    switch (r->op) {
    case OP_REJECTED:
        respond_simple(b, r, r->code, r->reason);
        return 0;
    case OP_PING:
        respond_simple(b, r, IPC_CODE_OK, NULL);
        return 0;
    case OP_REGISTER:
        account.secrets = r->secrets;
        account.created = (int64_t)time(NULL);
        status = db->ops->account_insert(db, r->domain, r->user, &account, error_r);
        auth_wipe(&account, sizeof(account));
        return respond_status(b, r, status) ? 0 : -1;
    case OP_UNREGISTER:
        status = db->ops->account_delete(db, r->domain, r->user, error_r);
        return respond_status(b, r, status) ? 0 : -1;
    case OP_PASSWD:
        status = db->ops->account_update_secrets(db, r->domain, r->user, &r->secrets, error_r);
        return respond_status(b, r, status) ? 0 : -1;
    case OP_GET:
        status = db->ops->account_get(db, r->domain, r->user, &account, error_r);
        if (status == STORE_OK)
            respond_account(b, r, &account);
        auth_wipe(&account, sizeof(account));
        return status == STORE_OK || respond_status(b, r, status) ? 0 : -1;
    case OP_LIST:
        b->list_len = 0;
        b->list_count = 0;
        b->list_full = false;
        status = db->ops->account_list(db, r->domain, list_collect, b, error_r);
        if (status == STORE_FAILED)
            return -1;
        respond_list(b, r);
        return 0;
    case OP_COUNT:
        status = db->ops->account_count(db, &count, error_r);
        if (status == STORE_FAILED)
            return -1;
        respond_decimal(b, r, count);
        return 0;
    }
    return 0;
}

/* One transaction over reqs[start..]: stops early when the responses fill
 * a frame (STORE_BATCH_CUT). On success *end_r is the first request not
 * run; the responses are in b->out. */
static int run_transaction(struct store_batch *b, size_t start, size_t *end_r, const char **error_r)
{
    struct store_db *db = b->db;
    const char *ignored;
    size_t i, frame_len;

    ipc_writer_reset(&b->out);
    if (db->impl == NULL) {
        /* A previous reconnect failed: try again, but not more than once
         * per interval, since each try may block for the connect timeout. */
        time_t now = time(NULL);
        if (now < b->next_connect) {
            *error_r = "database unavailable";
            return -1;
        }
        if (store_db_connect(db, NULL, error_r) < 0) {
            b->next_connect = now + STORE_RECONNECT_INTERVAL_S;
            return -1;
        }
        log_info("%s database reconnected", db->ops->name);
    }
    if (db->ops->begin(db, error_r) < 0)
        return -1;
    for (i = start; i < b->n; i++) {
        ipc_writer_frame(&b->out, &frame_len);
        if (frame_len > STORE_BATCH_CUT)
            break;
        if (execute(b, &b->reqs[i], error_r) < 0) {
            db->ops->rollback(db, &ignored);
            return -1;
        }
    }
    if (db->ops->commit(db, error_r) < 0) {
        db->ops->rollback(db, &ignored);
        return -1;
    }
    *end_r = i;
    return 0;
}

/* Hands every response in b->out to respond(). */
static void deliver(struct store_batch *b, store_response_cb *respond, void *ctx)
{
    struct ipc_cursor cur;
    struct ipc_msg msg;
    const uint8_t *frame;
    const char *error;
    size_t len;
    int rc;

    frame = ipc_writer_frame(&b->out, &len);
    if (frame == NULL)
        return;
    if (ipc_frame_open(&cur, frame, len, &error) < 0)
        log_panic("own response frame is invalid: %s", error);
    while ((rc = ipc_frame_next(&cur, &msg, &error)) == 1)
        respond(ctx, &msg);
    if (rc < 0)
        log_panic("own response frame is invalid: %s", error);
    ipc_writer_reset(&b->out);
}

void store_batch_run(struct store_batch *b, store_response_cb *respond, void *ctx)
{
    struct store_db *db = b->db;
    size_t start = 0, end;

    while (start < b->n) {
        const char *error = NULL;
        int rc = run_transaction(b, start, &end, &error);

        if (rc < 0 && db->lost && db->impl != NULL) {
            /* The server went away (restart, idle timeout): reconnect and
             * run the same requests once more. Had the lost COMMIT in fact
             * succeeded, the retry answers what the database now says (a
             * register then gets CONFLICT). */
            log_warnx("%s; reconnecting and retrying the batch", error);
            if (store_db_connect(db, NULL, &error) == 0)
                rc = run_transaction(b, start, &end, &error);
            else
                b->next_connect = time(NULL) + STORE_RECONNECT_INTERVAL_S;
        }
        if (rc < 0) {
            /* Nothing of this transaction was committed: say so to all. */
            log_error("%zu requests failed, nothing committed: %s", b->n - start, error);
            ipc_writer_reset(&b->out);
            for (size_t i = start; i < b->n; i++)
                respond_simple(b, &b->reqs[i], IPC_CODE_INTERNAL, "database error");
            end = b->n;
        }
        deliver(b, respond, ctx);
        start = end;
    }
    for (size_t i = 0; i < b->n; i++)
        auth_wipe(&b->reqs[i].secrets, sizeof(b->reqs[i].secrets));
    b->n = 0;
}
