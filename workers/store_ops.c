/*
 * The store's request layer: what switchboard-store does with each
 * IPC_REQUEST, above the backend interface of store_db.h. This comment is
 * the reference the other workers code against.
 *
 * Ops (arguments in ARG order; the answer is CODE plus ARGs):
 *   account.register   user, domain, password  OK | CONFLICT | BAD_REQUEST
 *   account.unregister user, domain            OK | NOT_FOUND | BAD_REQUEST; also deletes
 *                                              everything below kept for the user (roster,
 *                                              offline queue, archive, kv values, blocklist),
 *                                              in the same transaction
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
 * Per-user data (schema v2), for the XMPP worker. user and domain are
 * checked as above. When the user has no account the answer is NOT_FOUND
 * with REASON "no account"; the other NOT_FOUNDs have their own REASON.
 * JIDs (contact, with, blocked JIDs) must be 1 to STORE_MAX_ADDRESS bytes of
 * valid UTF-8 without control characters, and are stored and compared as
 * given: the XMPP worker normalizes them. Numbers are unsigned decimal
 * ASCII (at most 2^63 - 1). An ARG made of several fields joins them with
 * NUL bytes; only a last field (a stanza) may hold NULs itself. Caps are
 * the STORE_MAX_* constants of store_db.h.
 *
 * Roster (RFC 6121 §2), with versioning (§2.6):
 *   roster.get     user, domain, since
 *       OK, ARG0 = the roster's current version, then one ARG per item:
 *           contact \0 name \0 subscription \0 ask \0 approved \0 groups
 *       with subscription none|to|from|both (or "remove" in a delta), ask ""
 *       or "subscribe", approved "0" or "1", and groups the group names
 *       joined by '\n' ("" for none). REASON tells which items these are:
 *         "delta"  the items changed since version `since`, removed ones as
 *                  subscription "remove" (send them as roster pushes);
 *         "full"   the whole roster, without removed items: since was "",
 *                  not a version of this roster, older than the oldest
 *                  removal still remembered, or its delta would not fit;
 *         "truncated: ..."  the roster does not fit one response: only
 *                  part of it, which must not be cached as ARG0.
 *       A since equal to the current version gives a delta with no items.
 *   roster.set     user, domain, contact, name, subscription, ask, approved, groups
 *       Inserts or replaces the item. OK + the new version (decimal).
 *       BAD_REQUEST for a bad field (subscription other than none, to, from,
 *       both; ask other than "" or subscribe; approved other than 0 or 1; a
 *       name or group name over 1023 bytes, or with control characters; an
 *       empty or repeated group; more than 100 groups), or REASON "roster
 *       full" when a new item would pass STORE_MAX_ROSTER_ITEMS.
 *   roster.remove  user, domain, contact
 *       OK + the new version | NOT_FOUND "no such item".
 *   Every change adds one to the user's version and stamps the item with
 *   it. A removed item stays as a tombstone (subscription "remove") so that
 *   a delta can report it; a user keeps at most STORE_MAX_ROSTER_TOMBSTONES
 *   of them, and dropping the oldest one makes deltas from before it
 *   "full". Versions start again at 0 for a new account of the same name.
 *
 * Offline messages (RFC 6121 §8.5.2.2, XEP-0160), two-phase so that a
 * crash between fetching and delivering loses nothing:
 *   offline.push   user, domain, stanza   OK + the message's id | CONFLICT "offline queue
 *                                         full" at STORE_MAX_OFFLINE messages | BAD_REQUEST
 *                                         (empty, or over STORE_MAX_STANZA bytes)
 *   offline.fetch  user, domain           OK + one ARG per message, oldest first:
 *                                         id \0 stanza. At most STORE_OFFLINE_FETCH_MAX, and
 *                                         no more than fit one response; REASON "truncated:
 *                                         ..." when more are queued. Nothing is removed.
 *   offline.delete user, domain, id...    OK. Deletes those of the user's messages (ids of
 *                                         other users' messages, and unknown ids, are
 *                                         ignored). BAD_REQUEST for an id that is no number.
 *
 * Message archive (XEP-0313, paged as XEP-0059 RSM); append-only:
 *   archive.append user, domain, with, direction, created_us, stanza
 *       direction "in" or "out"; created_us microseconds since the epoch.
 *       OK + the archive id (decimal: the stanza-id shown to clients; ids
 *       only grow and are never reused).
 *   archive.query  user, domain, with, start_us, end_us, after_id, before_id, max
 *       with "" for any party; start_us/end_us "" for no bound (both
 *       inclusive); after_id "" for none; before_id "" for none, or "last"
 *       to page back from the end (RSM's empty <before/>); max 0 to 250, ""
 *       for 50 (0 returns the count only). A given before_id (or "last")
 *       pages backwards: the newest matches below it. OK, ARG0 "complete"
 *       when no further match lies beyond the page in its direction, else
 *       "incomplete"; ARG1 the number of matches of with/start/end over the
 *       whole archive (exact, from the index; after/before do not narrow
 *       it); then one ARG per message in ascending id order, also when
 *       paging backwards: id \0 with \0 direction \0 created_us \0 stanza.
 *       A page that would not fit one response is cut short (and is then
 *       "incomplete"). NOT_FOUND "unknown id" when after_id or before_id is
 *       not an id of this user's archive (XEP-0313 item-not-found).
 *   archive.purge  user, domain   OK; deletes the user's whole archive.
 *
 * Private XML storage (XEP-0049) and vCards (XEP-0054):
 *   kv.get     user, domain, kind, key          OK + value | NOT_FOUND "no value"
 *   kv.set     user, domain, kind, key, value   OK (inserts or replaces)
 *   kv.delete  user, domain, kind, key          OK | NOT_FOUND "no value"
 *   kind "private" with key "element-name namespace" (one space, both parts
 *   non-empty, at most STORE_MAX_KV_KEY bytes), or "vcard" with key "".
 *   A value is any bytes, at most STORE_MAX_KV_VALUE (64 KiB).
 *
 * Blocking (XEP-0191):
 *   block.list    user, domain           OK + one ARG per blocked JID, sorted bytewise
 *                                        (REASON "truncated: ..." if they do not fit)
 *   block.add     user, domain, jid...   OK (JIDs blocked already are fine) | BAD_REQUEST
 *                                        "blocklist full" when the list would pass
 *                                        STORE_MAX_BLOCKLIST: then nothing is added
 *   block.remove  user, domain, jid...   OK (JIDs not blocked are fine); a single ""
 *                                        unblocks everything
 *
 * Writes are batched, and acknowledged only when durable. Requests are
 * queued as they arrive (store_batch_add validates, copies the arguments
 * it will need into the batch's arena, and derives password secrets at
 * once, so no clear password is kept). At the end of each burst of broker
 * messages, or when the queue is full, store_batch_run executes all queued
 * requests in ONE transaction and COMMITs; only after the COMMIT succeeded
 * are the responses handed out. If anything fails at the database level
 * (or the COMMIT itself), the transaction is rolled back and every request
 * of the batch is answered INTERNAL: nothing was acknowledged that is not
 * on disk, and nothing on disk was left half-done. One request's own
 * failure (the account exists, is not there, a cap is reached) is not a
 * database failure and the other requests of the batch go on: each request
 * checks what can refuse it before it writes, and the one op that can only
 * tell after writing (block.add at the cap) undoes its writes with a
 * savepoint.
 *
 * One fsync then covers a whole batch, which is what lets the store keep up
 * with bursts of registrations, logins and archived messages.
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
/* The listed ARGs of one response (account.list, roster.get, offline.fetch,
 * archive.query, block.list), headers included; the rest of a message's
 * room is for the few other fields. A longer answer is cut and says so. */
#define STORE_MAX_LIST_BYTES (IPC_MAX_MESSAGE - (64u << 10))
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
    OP_ROSTER_GET,
    OP_ROSTER_SET,
    OP_ROSTER_REMOVE,
    OP_OFFLINE_PUSH,
    OP_OFFLINE_FETCH,
    OP_OFFLINE_DELETE,
    OP_ARCHIVE_APPEND,
    OP_ARCHIVE_QUERY,
    OP_ARCHIVE_PURGE,
    OP_KV_GET,
    OP_KV_SET,
    OP_KV_DELETE,
    OP_BLOCK_LIST,
    OP_BLOCK_ADD,
    OP_BLOCK_REMOVE,
    OP_REJECTED /* answered without touching the database */
};

/* Argument counts: min_args to max_args (the same for a fixed count). */
static const struct {
    const char *name;
    enum store_op op;
    uint32_t min_args, max_args;
} store_op_table[] = {
    {"account.register", OP_REGISTER, 3, 3},
    {"account.unregister", OP_UNREGISTER, 2, 2},
    {"account.passwd", OP_PASSWD, 3, 3},
    {"account.list", OP_LIST, 1, 1},
    {"account.get", OP_GET, 2, 2},
    {"account.count", OP_COUNT, 0, 0},
    {"store.ping", OP_PING, 0, 0},
    {"roster.get", OP_ROSTER_GET, 3, 3},
    {"roster.set", OP_ROSTER_SET, 8, 8},
    {"roster.remove", OP_ROSTER_REMOVE, 3, 3},
    {"offline.push", OP_OFFLINE_PUSH, 3, 3},
    {"offline.fetch", OP_OFFLINE_FETCH, 2, 2},
    {"offline.delete", OP_OFFLINE_DELETE, 2, 2 + STORE_MAX_OFFLINE},
    {"archive.append", OP_ARCHIVE_APPEND, 6, 6},
    {"archive.query", OP_ARCHIVE_QUERY, 8, 8},
    {"archive.purge", OP_ARCHIVE_PURGE, 2, 2},
    {"kv.get", OP_KV_GET, 4, 4},
    {"kv.set", OP_KV_SET, 5, 5},
    {"kv.delete", OP_KV_DELETE, 4, 4},
    {"block.list", OP_BLOCK_LIST, 2, 2},
    {"block.add", OP_BLOCK_ADD, 3, 2 + STORE_MAX_BLOCKLIST},
    {"block.remove", OP_BLOCK_REMOVE, 3, 2 + STORE_MAX_BLOCKLIST},
};

#define N_OPS (sizeof(store_op_table) / sizeof(store_op_table[0]))

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
    /* The arguments the op still needs when it runs, validated and copied
     * into the batch's arena: n_args records from offset arg_at. They are
     * kept as offsets because the arena moves when it grows. */
    size_t arg_at;
    uint32_t n_args;
    /* What was parsed from the arguments. */
    int64_t number; /* roster.get: since (-1: the full roster); archive.append: created_us */
    bool approved;  /* roster.set */
    struct store_archive_filter filter; /* archive.query; with is in the arena */
};

struct store_batch {
    struct store_db *db;
    struct store_request *reqs;
    size_t n, max;
    unsigned iterations;
    time_t next_connect; /* while the database is closed: earliest retry */
    /* The queued requests' arguments: (u32 length, bytes) records. Kept
     * between batches, so steady traffic allocates nothing. */
    uint8_t *arena;
    size_t arena_len, arena_cap;
    /* The responses of the running transaction, held back until COMMIT. */
    struct ipc_writer out;
    /* The ARGs of the list-like response being built: (u32 length, bytes)
     * records, their count, and whether one was refused for lack of room
     * (or because a count limit was reached). */
    uint8_t *rec;
    size_t rec_len, rec_cap, rec_count;
    bool rec_full;
    unsigned rec_limit; /* records at most, for the current collection */
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

/* --- checking arguments --- */

/* Why a text argument is refused; each field names the faults in its own
 * words (see the *_faults arrays). */
enum text_fault { TEXT_OK, TEXT_EMPTY, TEXT_LONG, TEXT_UTF8, TEXT_CONTROL };

static const char *const jid_faults[] = {
    NULL, "empty JID", "JID too long", "JID is not valid UTF-8", "control character in JID",
};
static const char *const name_faults[] = {
    NULL,
    NULL,
    "roster name too long",
    "roster name is not valid UTF-8",
    "control character in roster name",
};
static const char *const group_faults[] = {
    NULL,
    "empty group name",
    "group name too long",
    "group name is not valid UTF-8",
    "control character in group name",
};
static const char *const key_faults[] = {
    NULL,
    "empty private key",
    "private key too long",
    "private key is not valid UTF-8",
    "control character in private key",
};

/* Checks 1 (0 when empty_ok) to max bytes of valid UTF-8 without control
 * characters (C0, DEL, C1). */
static enum text_fault text_check(const uint8_t *p, size_t len, size_t max, bool empty_ok)
{
    size_t i = 0;

    if (len == 0 && !empty_ok)
        return TEXT_EMPTY;
    if (len > max)
        return TEXT_LONG;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);

        if (n == 0)
            return TEXT_UTF8;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return TEXT_CONTROL;
        i += n;
    }
    return TEXT_OK;
}

/* Parses an unsigned decimal of at most 2^63 - 1 (no sign, no spaces). */
static bool parse_decimal(const uint8_t *p, size_t len, int64_t *v_r)
{
    uint64_t v = 0;

    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v > INT64_MAX)
        return false;
    *v_r = (int64_t)v;
    return true;
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
    free(b->arena);
    ipc_writer_free(&b->out);
    free(b->rec);
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
    return batch->n >= batch->max || batch->arena_len >= STORE_BATCH_MAX_BYTES;
}

static void reject(struct store_request *r, uint32_t code, const char *reason)
{
    r->op = OP_REJECTED;
    r->code = code;
    r->reason = reason;
}

/* Copies one argument into the arena as the request's next record. A
 * request is at most IPC_MAX_MESSAGE bytes and the batch is full past
 * STORE_BATCH_MAX_BYTES, so the arena stays below their sum. */
static bool take_bytes(struct store_batch *b, struct store_request *r, const void *data, size_t len)
{
    uint32_t l = (uint32_t)len;

    if (b->arena_len + 4 + len > b->arena_cap) {
        size_t cap = b->arena_cap > 0 ? b->arena_cap : 65536;
        uint8_t *p;

        while (cap < b->arena_len + 4 + len)
            cap *= 2;
        p = realloc(b->arena, cap);
        if (p == NULL) {
            log_error("out of memory queueing request %" PRIu32, r->req_id);
            reject(r, IPC_CODE_INTERNAL, "out of memory");
            return false;
        }
        b->arena = p;
        b->arena_cap = cap;
    }
    if (r->n_args == 0)
        r->arg_at = b->arena_len;
    memcpy(b->arena + b->arena_len, &l, 4);
    if (len > 0)
        memcpy(b->arena + b->arena_len + 4, data, len);
    b->arena_len += 4 + len;
    r->n_args++;
    return true;
}

static bool take_slice(struct store_batch *b, struct store_request *r, struct ipc_slice s)
{
    return take_bytes(b, r, s.ptr, s.len);
}

/* The request's next argument record, from *pos (start at r->arg_at). */
static struct store_column arg_next(const struct store_batch *b, size_t *pos)
{
    struct store_column c;
    uint32_t l;

    memcpy(&l, b->arena + *pos, 4);
    c.ptr = b->arena + *pos + 4;
    c.len = l;
    *pos += 4 + l;
    return c;
}

/* A text argument checked by text_check; refused with faults[fault]. */
static bool take_text(struct store_request *r, struct ipc_slice s, size_t max, bool empty_ok,
                      const char *const faults[])
{
    enum text_fault fault = text_check(s.ptr, s.len, max, empty_ok);

    if (fault != TEXT_OK) {
        reject(r, IPC_CODE_BAD_REQUEST, faults[fault]);
        return false;
    }
    return true;
}

static bool take_jid(struct store_request *r, struct ipc_slice s)
{
    return take_text(r, s, STORE_MAX_ADDRESS, false, jid_faults);
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

/* The groups of a roster item: names joined by '\n', each non-empty and
 * unique (RFC 6121 §2.3.3 refuses a repeated group). */
static bool check_groups(struct store_request *r, struct ipc_slice s)
{
    struct ipc_slice group[STORE_MAX_ROSTER_GROUPS];
    size_t n = 0, start = 0;

    if (s.len == 0)
        return true;
    for (size_t i = 0; i <= s.len; i++) {
        if (i < s.len && s.ptr[i] != '\n')
            continue;
        if (n == STORE_MAX_ROSTER_GROUPS) {
            reject(r, IPC_CODE_BAD_REQUEST, "too many groups");
            return false;
        }
        group[n].ptr = s.ptr + start;
        group[n].len = (uint32_t)(i - start);
        if (!take_text(r, group[n], STORE_MAX_ROSTER_GROUP, false, group_faults))
            return false;
        for (size_t j = 0; j < n; j++) {
            if (group[j].len == group[n].len &&
                memcmp(group[j].ptr, group[n].ptr, group[n].len) == 0) {
                reject(r, IPC_CODE_BAD_REQUEST, "repeated group");
                return false;
            }
        }
        n++;
        start = i + 1;
    }
    return true;
}

/* roster.set: contact, name, subscription, ask, approved, groups. */
static void take_roster_item(struct store_batch *b, struct store_request *r,
                             const struct ipc_slice *args)
{
    struct ipc_slice sub = args[2], ask = args[3], approved = args[4];

    if (!take_jid(r, args[0]) || !take_text(r, args[1], STORE_MAX_ROSTER_NAME, true, name_faults))
        return;
    /* "remove" is roster.remove's business; the tombstones it leaves are
     * the only rows with that value. */
    if (!ipc_slice_eq(sub, "none") && !ipc_slice_eq(sub, "to") && !ipc_slice_eq(sub, "from") &&
        !ipc_slice_eq(sub, "both")) {
        reject(r, IPC_CODE_BAD_REQUEST, "bad subscription");
        return;
    }
    if (!ipc_slice_eq(ask, "") && !ipc_slice_eq(ask, "subscribe")) {
        reject(r, IPC_CODE_BAD_REQUEST, "bad ask");
        return;
    }
    if (!ipc_slice_eq(approved, "0") && !ipc_slice_eq(approved, "1")) {
        reject(r, IPC_CODE_BAD_REQUEST, "bad approved");
        return;
    }
    r->approved = ipc_slice_eq(approved, "1");
    if (!check_groups(r, args[5]))
        return;
    /* contact, name, subscription, ask, groups */
    if (take_slice(b, r, args[0]) && take_slice(b, r, args[1]) && take_slice(b, r, sub) &&
        take_slice(b, r, ask))
        take_slice(b, r, args[5]);
}

static bool take_stanza(struct store_batch *b, struct store_request *r, struct ipc_slice s)
{
    if (s.len == 0) {
        reject(r, IPC_CODE_BAD_REQUEST, "empty stanza");
        return false;
    }
    if (s.len > STORE_MAX_STANZA) {
        reject(r, IPC_CODE_BAD_REQUEST, "stanza too large");
        return false;
    }
    return take_slice(b, r, s);
}

/* archive.append: with, direction, created_us, stanza. */
static void take_archive_row(struct store_batch *b, struct store_request *r,
                             const struct ipc_slice *args)
{
    if (!take_jid(r, args[0]))
        return;
    if (!ipc_slice_eq(args[1], "in") && !ipc_slice_eq(args[1], "out")) {
        reject(r, IPC_CODE_BAD_REQUEST, "bad direction");
        return;
    }
    if (!parse_decimal(args[2].ptr, args[2].len, &r->number)) {
        reject(r, IPC_CODE_BAD_REQUEST, "bad created_us");
        return;
    }
    /* with, direction, stanza */
    if (take_slice(b, r, args[0]) && take_slice(b, r, args[1]))
        take_stanza(b, r, args[3]);
}

/* An optional decimal bound: "" leaves *v_r at its open value. */
static bool take_bound(struct store_request *r, struct ipc_slice s, int64_t *v_r, const char *fault)
{
    if (s.len > 0 && !parse_decimal(s.ptr, s.len, v_r)) {
        reject(r, IPC_CODE_BAD_REQUEST, fault);
        return false;
    }
    return true;
}

/* archive.query: with, start_us, end_us, after_id, before_id, max. */
static void take_archive_filter(struct store_batch *b, struct store_request *r,
                                const struct ipc_slice *args)
{
    struct store_archive_filter *f = &r->filter;
    int64_t max = STORE_ARCHIVE_DEFAULT_PAGE;

    memset(f, 0, sizeof(*f));
    f->start_us = INT64_MIN;
    f->end_us = INT64_MAX;
    f->after_id = 0;
    f->before_id = INT64_MAX;
    if (args[0].len > 0 && !take_jid(r, args[0]))
        return;
    if (!take_bound(r, args[1], &f->start_us, "bad start_us") ||
        !take_bound(r, args[2], &f->end_us, "bad end_us") ||
        !take_bound(r, args[3], &f->after_id, "bad after_id"))
        return;
    if (ipc_slice_eq(args[4], "last")) {
        f->backward = true;
    } else if (args[4].len > 0) {
        if (!take_bound(r, args[4], &f->before_id, "bad before_id"))
            return;
        f->backward = true;
    }
    if (!take_bound(r, args[5], &max, "bad max"))
        return;
    if (max > STORE_ARCHIVE_MAX_PAGE) {
        reject(r, IPC_CODE_BAD_REQUEST, "bad max");
        return;
    }
    f->limit = (unsigned)max;
    if (args[0].len > 0)
        take_slice(b, r, args[0]);
}

/* kv ops: kind, key, and for kv.set the value. */
static void take_kv(struct store_batch *b, struct store_request *r, const struct ipc_slice *args,
                    uint32_t n)
{
    struct ipc_slice kind = args[0], key = args[1];

    if (ipc_slice_eq(kind, "vcard")) {
        if (key.len != 0) {
            reject(r, IPC_CODE_BAD_REQUEST, "vcard key must be empty");
            return;
        }
    } else if (ipc_slice_eq(kind, "private")) {
        /* "element-name namespace": XML names and namespace URIs hold no
         * space, so exactly one, with something on each side. */
        const uint8_t *sp = key.len > 0 ? memchr(key.ptr, ' ', key.len) : NULL;

        if (!take_text(r, key, STORE_MAX_KV_KEY, false, key_faults))
            return;
        if (sp == NULL || sp == key.ptr || sp == key.ptr + key.len - 1 ||
            memchr(sp + 1, ' ', (size_t)(key.ptr + key.len - sp - 1)) != NULL) {
            reject(r, IPC_CODE_BAD_REQUEST, "private key must be \"element-name namespace\"");
            return;
        }
    } else {
        reject(r, IPC_CODE_BAD_REQUEST, "bad kind");
        return;
    }
    if (n == 3 && args[2].len > STORE_MAX_KV_VALUE) {
        reject(r, IPC_CODE_BAD_REQUEST, "value too large");
        return;
    }
    if (take_slice(b, r, kind) && take_slice(b, r, key) && n == 3)
        take_slice(b, r, args[2]);
}

/* The variable part of offline.delete (ids) and block.add/remove (JIDs):
 * every ARG after user and domain. */
static void take_list(struct store_batch *b, struct store_request *r, const struct ipc_msg *m)
{
    struct ipc_slice arg;
    uint32_t offset = 0, i = 0;
    int64_t id;

    while (ipc_msg_each(m, IPC_F_ARG, &offset, &arg) == 1) {
        if (i++ < 2)
            continue;
        if (r->op == OP_OFFLINE_DELETE) {
            if (!parse_decimal(arg.ptr, arg.len, &id)) {
                reject(r, IPC_CODE_BAD_REQUEST, "bad id");
                return;
            }
            if (!take_bytes(b, r, &id, sizeof(id)))
                return;
            continue;
        }
        /* XEP-0191 unblock-all: block.remove with one empty JID. */
        if (r->op == OP_BLOCK_REMOVE && arg.len == 0 && m->n_arg == 3) {
            r->n_args = 0;
            return;
        }
        if (!take_jid(r, arg) || !take_slice(b, r, arg))
            return;
    }
}

/* Leading arguments looked at by position; the variable-length ops read
 * the rest with take_list. */
#define STORE_FIXED_ARGS 8

bool store_batch_add(struct store_batch *b, const struct ipc_msg *m)
{
    struct ipc_slice args[STORE_FIXED_ARGS];
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
    if (store_batch_full(b)) {
        log_warnx("batch full; request %" PRIu32 " dropped", m->req_id);
        return false;
    }
    r = &b->reqs[b->n++];
    r->worker = m->worker;
    r->req_id = m->req_id;
    r->domain = NULL;
    r->user[0] = '\0';
    r->arg_at = b->arena_len;
    r->n_args = 0;
    r->number = -1;

    for (i = 0; i < N_OPS; i++) {
        if (ipc_slice_eq(m->op, store_op_table[i].name))
            break;
    }
    if (i == N_OPS) {
        char sample[64];
        log_debug("unknown op \"%s\" from worker %" PRIu32,
                  log_sample(sample, sizeof(sample), m->op.ptr, m->op.len), m->worker);
        reject(r, IPC_CODE_BAD_REQUEST, "unknown op");
        return true;
    }
    r->op = store_op_table[i].op;
    if (m->n_arg < store_op_table[i].min_args || m->n_arg > store_op_table[i].max_args) {
        reject(r, IPC_CODE_BAD_REQUEST, "wrong number of arguments");
        return true;
    }
    while (n < STORE_FIXED_ARGS && ipc_msg_each(m, IPC_F_ARG, &offset, &args[n]) == 1)
        n++;
    if (n != m->n_arg && n != STORE_FIXED_ARGS) {
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
    case OP_OFFLINE_FETCH:
    case OP_ARCHIVE_PURGE:
    case OP_BLOCK_LIST:
        take_account(b, r, args);
        break;
    case OP_LIST:
        r->domain = store_domain_lookup(b->db->config, args[0].ptr, args[0].len);
        if (r->domain == NULL)
            reject(r, IPC_CODE_BAD_REQUEST, "unknown domain");
        break;
    case OP_ROSTER_GET:
        /* A version this store did not hand out (not a number, or from
         * another server) is no error: the client gets the full roster. */
        if (take_account(b, r, args) && !parse_decimal(args[2].ptr, args[2].len, &r->number))
            r->number = -1;
        break;
    case OP_ROSTER_SET:
        if (take_account(b, r, args))
            take_roster_item(b, r, args + 2);
        break;
    case OP_ROSTER_REMOVE:
        if (take_account(b, r, args) && take_jid(r, args[2]))
            take_slice(b, r, args[2]);
        break;
    case OP_OFFLINE_PUSH:
        if (take_account(b, r, args))
            take_stanza(b, r, args[2]);
        break;
    case OP_ARCHIVE_APPEND:
        if (take_account(b, r, args))
            take_archive_row(b, r, args + 2);
        break;
    case OP_ARCHIVE_QUERY:
        if (take_account(b, r, args))
            take_archive_filter(b, r, args + 2);
        break;
    case OP_KV_GET:
    case OP_KV_DELETE:
    case OP_KV_SET:
        if (take_account(b, r, args))
            take_kv(b, r, args + 2, m->n_arg - 2);
        break;
    case OP_OFFLINE_DELETE:
    case OP_BLOCK_ADD:
    case OP_BLOCK_REMOVE:
        if (take_account(b, r, args))
            take_list(b, r, m);
        break;
    case OP_COUNT:
    case OP_PING:
    case OP_REJECTED:
        break;
    }
    return true;
}

/* --- answering --- */

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

/* A number as a column, written into buf. */
static struct store_column decimal(char buf[24], int64_t v)
{
    struct store_column c = {buf, (size_t)snprintf(buf, 24, "%" PRId64, v)};
    return c;
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

/* The answer to a per-request status of an account op; false for a
 * database failure. */
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

/*
 * List-like responses are collected first, as records, and encoded once
 * complete: whether the answer was cut (its REASON) is known only at the
 * end, and a database failure half-way must leave no half response.
 */
static void rec_reset(struct store_batch *b, unsigned limit)
{
    b->rec_len = 0;
    b->rec_count = 0;
    b->rec_full = false;
    b->rec_limit = limit;
}

/* Adds one ARG made of n fields joined by NUL bytes. False, with
 * rec_full set, when rec_limit records are there already or the response
 * has no room left: the caller stops collecting. */
static bool rec_add(struct store_batch *b, const struct store_column *fields, size_t n)
{
    size_t len = n - 1, need;
    uint32_t l;
    uint8_t *p;

    for (size_t i = 0; i < n; i++)
        len += fields[i].len;
    need = 4 + len;
    /* In the response each record costs its bytes plus an ARG header, one
     * byte more than its length prefix here. */
    if (b->rec_count >= b->rec_limit ||
        b->rec_len + b->rec_count + need + 1 > STORE_MAX_LIST_BYTES) {
        b->rec_full = true;
        return false;
    }
    if (b->rec_len + need > b->rec_cap) {
        size_t cap = b->rec_cap > 0 ? b->rec_cap : 4096;

        while (cap < b->rec_len + need)
            cap *= 2;
        p = realloc(b->rec, cap);
        if (p == NULL) {
            log_error("out of memory collecting a response");
            b->rec_full = true;
            return false;
        }
        b->rec = p;
        b->rec_cap = cap;
    }
    l = (uint32_t)len;
    p = b->rec + b->rec_len;
    memcpy(p, &l, 4);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *p++ = '\0';
        if (fields[i].len > 0)
            memcpy(p, fields[i].ptr, fields[i].len);
        p += fields[i].len;
    }
    b->rec_len += need;
    b->rec_count++;
    return true;
}

/* OK with REASON reason (may be NULL), the n_head ARGs of head, then the
 * collected records, in reverse order when reverse. */
static void respond_records(struct store_batch *b, const struct store_request *r,
                            const char *reason, const struct store_column *head, size_t n_head,
                            bool reverse)
{
    size_t at[STORE_ARCHIVE_MAX_PAGE + 1], pos = 0, k = 0;
    uint32_t len;

    response_begin(b, r, IPC_CODE_OK, reason);
    for (size_t i = 0; i < n_head; i++)
        ipc_put_bytes(&b->out, IPC_F_ARG, head[i].ptr, head[i].len);
    if (reverse) {
        /* Only archive pages are reversed, and they hold at most
         * STORE_ARCHIVE_MAX_PAGE records (rec_limit). */
        if (b->rec_count > STORE_ARCHIVE_MAX_PAGE + 1)
            log_panic("%zu records to reverse", b->rec_count);
        for (; pos < b->rec_len; k++) {
            at[k] = pos;
            memcpy(&len, b->rec + pos, 4);
            pos += 4 + len;
        }
        while (k-- > 0) {
            memcpy(&len, b->rec + at[k], 4);
            ipc_put_bytes(&b->out, IPC_F_ARG, b->rec + at[k] + 4, len);
        }
    } else {
        while (pos < b->rec_len) {
            memcpy(&len, b->rec + pos, 4);
            ipc_put_bytes(&b->out, IPC_F_ARG, b->rec + pos + 4, len);
            pos += 4 + len;
        }
    }
    response_end(b, r);
}

static bool list_collect(void *ctx, const char *name, size_t len)
{
    struct store_column field = {name, len};

    return rec_add(ctx, &field, 1);
}

static bool col_is(struct store_column c, const char *s)
{
    return c.len == strlen(s) && (c.len == 0 || memcmp(c.ptr, s, c.len) == 0);
}

static bool col_has_nul(struct store_column c)
{
    return c.len > 0 && memchr(c.ptr, '\0', c.len) != NULL;
}

/* A roster row as read back: what roster.set lets in, or a tombstone.
 * A row that breaks the format (a hand-edited database) is left out and
 * logged, rather than making the whole roster unreadable. */
static bool roster_collect(void *ctx, const struct store_roster_item *item)
{
    struct store_column f[6] = {
        item->contact, item->name, item->subscription, item->ask, {item->approved ? "1" : "0", 1},
        item->groups};

    if (!(col_is(item->subscription, "none") || col_is(item->subscription, "to") ||
          col_is(item->subscription, "from") || col_is(item->subscription, "both") ||
          col_is(item->subscription, "remove")) ||
        !(col_is(item->ask, "") || col_is(item->ask, "subscribe")) || item->contact.len == 0 ||
        col_has_nul(item->contact) || col_has_nul(item->name) || col_has_nul(item->groups)) {
        log_error("malformed roster row (version %" PRId64 ") left out", item->version);
        return true;
    }
    return rec_add(ctx, f, 6);
}

static bool offline_collect(void *ctx, int64_t id, const void *stanza, size_t len)
{
    char num[24];
    struct store_column f[2] = {decimal(num, id), {stanza, len}};

    return rec_add(ctx, f, 2);
}

static bool archive_collect(void *ctx, const struct store_archive_row *row)
{
    char id[24], created[24];
    struct store_column f[5] = {decimal(id, row->id), row->with, row->direction,
                                decimal(created, row->created_us), row->stanza};

    if (col_has_nul(row->with) ||
        !(col_is(row->direction, "in") || col_is(row->direction, "out"))) {
        log_error("malformed archive row %" PRId64 " left out", row->id);
        return true;
    }
    return rec_add(ctx, f, 5);
}

struct kv_answer {
    struct store_batch *b;
    const struct store_request *r;
};

static void kv_respond(void *ctx, const void *value, size_t len)
{
    struct kv_answer *a = ctx;

    response_begin(a->b, a->r, IPC_CODE_OK, NULL);
    ipc_put_bytes(&a->b->out, IPC_F_ARG, value, len);
    response_end(a->b, a->r);
}

/* --- running --- */

/* The per-user ops answer NOT_FOUND "no account" for a user without one:
 * 1 when the account exists, 0 when that was answered, -1 on a database
 * failure. */
static int need_account(struct store_batch *b, const struct store_request *r, const char **error_r)
{
    enum store_status status = b->db->ops->account_exists(b->db, r->domain, r->user, error_r);

    if (status == STORE_OK)
        return 1;
    if (status != STORE_NOT_FOUND)
        return -1;
    respond_simple(b, r, IPC_CODE_NOT_FOUND, "no account");
    return 0;
}

static int run_roster_get(struct store_batch *b, const struct store_request *r,
                          const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    const char *reason = NULL;
    int64_t version, pruned, since = r->number;
    char num[24];
    struct store_column head;

    if (ops->roster_version_get(b->db, r->domain, r->user, &version, &pruned, error_r) != STORE_OK)
        return -1;
    /* A delta is exact only from a version this roster had and whose later
     * removals are all still remembered. */
    if (since >= 0 && since <= version && since >= pruned) {
        rec_reset(b, UINT32_MAX);
        if (ops->roster_list(b->db, r->domain, r->user, since, roster_collect, b, error_r) !=
            STORE_OK)
            return -1;
        if (!b->rec_full)
            reason = "delta";
    }
    if (reason == NULL) {
        rec_reset(b, UINT32_MAX);
        if (ops->roster_list(b->db, r->domain, r->user, -1, roster_collect, b, error_r) != STORE_OK)
            return -1;
        reason = b->rec_full ? "truncated: more roster items than fit one response" : "full";
    }
    head = decimal(num, version);
    respond_records(b, r, reason, &head, 1, false);
    return 0;
}

static int run_roster_set(struct store_batch *b, const struct store_request *r,
                          const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    struct store_roster_item item;
    enum store_status status;
    size_t pos = r->arg_at;
    uint64_t count;

    item.contact = arg_next(b, &pos);
    item.name = arg_next(b, &pos);
    item.subscription = arg_next(b, &pos);
    item.ask = arg_next(b, &pos);
    item.groups = arg_next(b, &pos);
    item.approved = r->approved;
    status = ops->roster_item_exists(b->db, r->domain, r->user, item.contact, error_r);
    if (status == STORE_FAILED)
        return -1;
    if (status == STORE_NOT_FOUND) {
        if (ops->roster_count(b->db, r->domain, r->user, false, &count, error_r) != STORE_OK)
            return -1;
        if (count >= STORE_MAX_ROSTER_ITEMS) {
            respond_simple(b, r, IPC_CODE_BAD_REQUEST, "roster full");
            return 0;
        }
    }
    if (ops->roster_version_bump(b->db, r->domain, r->user, &item.version, error_r) != STORE_OK ||
        ops->roster_put(b->db, r->domain, r->user, &item, error_r) != STORE_OK)
        return -1;
    respond_decimal(b, r, (uint64_t)item.version);
    return 0;
}

static int run_roster_remove(struct store_batch *b, const struct store_request *r,
                             const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    struct store_roster_item tomb = {
        .name = {"", 0}, .subscription = {"remove", 6}, .ask = {"", 0}, .groups = {"", 0}};
    enum store_status status;
    size_t pos = r->arg_at;
    uint64_t count;

    tomb.contact = arg_next(b, &pos);
    status = ops->roster_item_exists(b->db, r->domain, r->user, tomb.contact, error_r);
    if (status == STORE_FAILED)
        return -1;
    if (status == STORE_NOT_FOUND) {
        respond_simple(b, r, IPC_CODE_NOT_FOUND, "no such item");
        return 0;
    }
    if (ops->roster_version_bump(b->db, r->domain, r->user, &tomb.version, error_r) != STORE_OK ||
        ops->roster_put(b->db, r->domain, r->user, &tomb, error_r) != STORE_OK ||
        ops->roster_count(b->db, r->domain, r->user, true, &count, error_r) != STORE_OK)
        return -1;
    /* Each removal adds one tombstone, so this drops one at most (more
     * only if the cap was lowered). */
    for (; count > STORE_MAX_ROSTER_TOMBSTONES; count--) {
        if (ops->roster_prune(b->db, r->domain, r->user, error_r) == STORE_FAILED)
            return -1;
    }
    respond_decimal(b, r, (uint64_t)tomb.version);
    return 0;
}

static int run_offline_push(struct store_batch *b, const struct store_request *r,
                            const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    size_t pos = r->arg_at;
    struct store_column stanza = arg_next(b, &pos);
    uint64_t count;
    int64_t id;

    if (ops->offline_count(b->db, r->domain, r->user, &count, error_r) != STORE_OK)
        return -1;
    if (count >= STORE_MAX_OFFLINE) {
        respond_simple(b, r, IPC_CODE_CONFLICT, "offline queue full");
        return 0;
    }
    if (ops->offline_insert(b->db, r->domain, r->user, stanza, (int64_t)time(NULL), &id, error_r) !=
        STORE_OK)
        return -1;
    respond_decimal(b, r, (uint64_t)id);
    return 0;
}

static int run_offline_fetch(struct store_batch *b, const struct store_request *r,
                             const char **error_r)
{
    /* One more than handed out, to tell whether more are queued. */
    rec_reset(b, STORE_OFFLINE_FETCH_MAX);
    if (b->db->ops->offline_list(b->db, r->domain, r->user, STORE_OFFLINE_FETCH_MAX + 1,
                                 offline_collect, b, error_r) != STORE_OK)
        return -1;
    respond_records(b, r, b->rec_full ? "truncated: more messages are queued" : NULL, NULL, 0,
                    false);
    return 0;
}

static int run_offline_delete(struct store_batch *b, const struct store_request *r,
                              const char **error_r)
{
    size_t pos = r->arg_at;

    for (uint32_t i = 0; i < r->n_args; i++) {
        struct store_column c = arg_next(b, &pos);
        int64_t id;

        memcpy(&id, c.ptr, sizeof(id));
        if (b->db->ops->offline_delete(b->db, r->domain, r->user, id, error_r) == STORE_FAILED)
            return -1;
    }
    respond_simple(b, r, IPC_CODE_OK, NULL);
    return 0;
}

static int run_archive_append(struct store_batch *b, const struct store_request *r,
                              const char **error_r)
{
    struct store_archive_row row = {0};
    size_t pos = r->arg_at;
    int64_t id;

    row.with = arg_next(b, &pos);
    row.direction = arg_next(b, &pos);
    row.stanza = arg_next(b, &pos);
    row.created_us = r->number;
    if (b->db->ops->archive_insert(b->db, r->domain, r->user, &row, &id, error_r) != STORE_OK)
        return -1;
    respond_decimal(b, r, (uint64_t)id);
    return 0;
}

static int run_archive_query(struct store_batch *b, const struct store_request *r,
                             const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    struct store_archive_filter f = r->filter;
    struct store_column head[2];
    enum store_status status;
    size_t pos = r->arg_at;
    uint64_t count;
    char num[24];

    if (r->n_args == 1)
        f.with = arg_next(b, &pos);
    /* XEP-0313 §6.1 (XEP-0059 §2.5): paging from an id that is not in the
     * archive is item-not-found. */
    for (int i = 0; i < 2; i++) {
        int64_t id = i == 0 ? f.after_id : f.before_id;

        if (id == (i == 0 ? 0 : INT64_MAX))
            continue;
        status = ops->archive_id_exists(b->db, r->domain, r->user, id, error_r);
        if (status == STORE_FAILED)
            return -1;
        if (status == STORE_NOT_FOUND) {
            respond_simple(b, r, IPC_CODE_NOT_FOUND, "unknown id");
            return 0;
        }
    }
    if (ops->archive_count(b->db, r->domain, r->user, &f, &count, error_r) != STORE_OK)
        return -1;
    /* One row more than the page, to tell whether the page is the last in
     * its direction. */
    rec_reset(b, f.limit);
    f.limit++;
    if (ops->archive_query(b->db, r->domain, r->user, &f, archive_collect, b, error_r) != STORE_OK)
        return -1;
    head[0].ptr = b->rec_full ? "incomplete" : "complete";
    head[0].len = strlen(head[0].ptr);
    head[1] = decimal(num, (int64_t)count);
    respond_records(b, r, NULL, head, 2, f.backward);
    return 0;
}

static int run_kv(struct store_batch *b, const struct store_request *r, const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    struct kv_answer answer = {b, r};
    enum store_status status;
    size_t pos = r->arg_at;
    struct store_column kind = arg_next(b, &pos), key = arg_next(b, &pos);

    if (r->op == OP_KV_SET) {
        if (ops->kv_set(b->db, r->domain, r->user, kind, key, arg_next(b, &pos), error_r) !=
            STORE_OK)
            return -1;
        respond_simple(b, r, IPC_CODE_OK, NULL);
        return 0;
    }
    if (r->op == OP_KV_GET)
        status = ops->kv_get(b->db, r->domain, r->user, kind, key, kv_respond, &answer, error_r);
    else
        status = ops->kv_delete(b->db, r->domain, r->user, kind, key, error_r);
    if (status == STORE_FAILED)
        return -1;
    if (status == STORE_NOT_FOUND)
        respond_simple(b, r, IPC_CODE_NOT_FOUND, "no value");
    else if (r->op == OP_KV_DELETE)
        respond_simple(b, r, IPC_CODE_OK, NULL);
    return 0;
}

static int run_block_list(struct store_batch *b, const struct store_request *r,
                          const char **error_r)
{
    rec_reset(b, UINT32_MAX);
    if (b->db->ops->block_list(b->db, r->domain, r->user, list_collect, b, error_r) != STORE_OK)
        return -1;
    respond_records(b, r, b->rec_full ? "truncated: more blocked JIDs than fit one response" : NULL,
                    NULL, 0, false);
    return 0;
}

/* Adds every JID of the request: -1 on a database failure. */
static int block_add_all(struct store_batch *b, const struct store_request *r, const char **error_r)
{
    size_t pos = r->arg_at;

    for (uint32_t i = 0; i < r->n_args; i++) {
        if (b->db->ops->block_add(b->db, r->domain, r->user, arg_next(b, &pos), error_r) ==
            STORE_FAILED)
            return -1;
    }
    return 0;
}

static int run_block_add(struct store_batch *b, const struct store_request *r, const char **error_r)
{
    const struct store_backend_ops *ops = b->db->ops;
    const char *ignored;
    uint64_t count;

    if (ops->block_count(b->db, r->domain, r->user, &count, error_r) != STORE_OK)
        return -1;
    if (count + r->n_args <= STORE_MAX_BLOCKLIST) {
        if (block_add_all(b, r, error_r) < 0)
            return -1;
        respond_simple(b, r, IPC_CODE_OK, NULL);
        return 0;
    }
    /* Near the cap only the result tells (some JIDs may be blocked
     * already): add, count, and take it all back when past the cap. */
    if (ops->savepoint(b->db, error_r) < 0)
        return -1;
    if (block_add_all(b, r, error_r) < 0 ||
        ops->block_count(b->db, r->domain, r->user, &count, error_r) != STORE_OK) {
        ops->savepoint_rollback(b->db, &ignored);
        return -1;
    }
    if (count > STORE_MAX_BLOCKLIST) {
        if (ops->savepoint_rollback(b->db, error_r) < 0)
            return -1;
        respond_simple(b, r, IPC_CODE_BAD_REQUEST, "blocklist full");
        return 0;
    }
    if (ops->savepoint_release(b->db, error_r) < 0)
        return -1;
    respond_simple(b, r, IPC_CODE_OK, NULL);
    return 0;
}

static int run_block_remove(struct store_batch *b, const struct store_request *r,
                            const char **error_r)
{
    size_t pos = r->arg_at;

    /* No JIDs left after take_list: the single "" of unblock-all. */
    if (r->n_args == 0) {
        if (b->db->ops->block_clear(b->db, r->domain, r->user, error_r) != STORE_OK)
            return -1;
    }
    for (uint32_t i = 0; i < r->n_args; i++) {
        if (b->db->ops->block_remove(b->db, r->domain, r->user, arg_next(b, &pos), error_r) ==
            STORE_FAILED)
            return -1;
    }
    respond_simple(b, r, IPC_CODE_OK, NULL);
    return 0;
}

/* The per-user ops: they need the account to exist. */
static int execute_user_op(struct store_batch *b, const struct store_request *r,
                           const char **error_r)
{
    int rc = need_account(b, r, error_r);

    if (rc <= 0)
        return rc;
    switch (r->op) {
    case OP_ROSTER_GET:
        return run_roster_get(b, r, error_r);
    case OP_ROSTER_SET:
        return run_roster_set(b, r, error_r);
    case OP_ROSTER_REMOVE:
        return run_roster_remove(b, r, error_r);
    case OP_OFFLINE_PUSH:
        return run_offline_push(b, r, error_r);
    case OP_OFFLINE_FETCH:
        return run_offline_fetch(b, r, error_r);
    case OP_OFFLINE_DELETE:
        return run_offline_delete(b, r, error_r);
    case OP_ARCHIVE_APPEND:
        return run_archive_append(b, r, error_r);
    case OP_ARCHIVE_QUERY:
        return run_archive_query(b, r, error_r);
    case OP_ARCHIVE_PURGE:
        if (b->db->ops->archive_purge(b->db, r->domain, r->user, error_r) != STORE_OK)
            return -1;
        respond_simple(b, r, IPC_CODE_OK, NULL);
        return 0;
    case OP_KV_GET:
    case OP_KV_SET:
    case OP_KV_DELETE:
        return run_kv(b, r, error_r);
    case OP_BLOCK_LIST:
        return run_block_list(b, r, error_r);
    case OP_BLOCK_ADD:
        return run_block_add(b, r, error_r);
    case OP_BLOCK_REMOVE:
        return run_block_remove(b, r, error_r);
    default:
        log_panic("op %d is not a per-user op", (int)r->op);
    }
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
        rec_reset(b, UINT32_MAX);
        status = db->ops->account_list(db, r->domain, list_collect, b, error_r);
        if (status == STORE_FAILED)
            return -1;
        /* A list that does not fit one response is cut, and says so in the
         * REASON (switchboardctl prints it as a note). */
        respond_records(b, r, b->rec_full ? "truncated: more accounts than fit one response" : NULL,
                        NULL, 0, false);
        return 0;
    case OP_COUNT:
        status = db->ops->account_count(db, &count, error_r);
        if (status == STORE_FAILED)
            return -1;
        respond_decimal(b, r, count);
        return 0;
    default:
        return execute_user_op(b, r, error_r);
    }
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
             * register then gets CONFLICT), and an offline.push or
             * archive.append is stored twice: at least once, never lost. */
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
    b->arena_len = 0;
}
