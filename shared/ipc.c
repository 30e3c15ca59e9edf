/*
 * Encoder and decoder for the frames described in ipc.h. The decoder is a
 * cursor over untrusted bytes: every length is checked against what is left
 * before it is used, and a message must consume exactly its body.
 */
#include "shared/ipc.h"

#include <stdlib.h>
#include <string.h>

#define BIT(tag) (UINT64_C(1) << (tag))

enum field_form { FORM_STR, FORM_BYTES, FORM_U8, FORM_U32, FORM_I32, FORM_U64 };

struct field_rule {
    enum field_form form;
    uint32_t max_len; /* for FORM_STR/FORM_BYTES */
    bool repeatable;
};

static const struct field_rule field_rules[IPC_F_MAX] = {
    [IPC_F_KIND] = {FORM_STR, 32, false},
    [IPC_F_PID] = {FORM_U32, 0, false},
    [IPC_F_WORKER] = {FORM_U32, 0, false},
    [IPC_F_EPOCH] = {FORM_U64, 0, false},
    [IPC_F_REASON] = {FORM_STR, IPC_MAX_SHORT, false},
    [IPC_F_ADDRESS] = {FORM_STR, IPC_MAX_ADDRESS, false},
    [IPC_F_CONN] = {FORM_U64, 0, false},
    [IPC_F_TARGET] = {FORM_U64, 0, true},
    [IPC_F_SKIND] = {FORM_U8, 0, false},
    [IPC_F_TYPE] = {FORM_STR, 64, false},
    [IPC_F_ID] = {FORM_STR, IPC_MAX_SHORT, false},
    [IPC_F_FROM] = {FORM_STR, IPC_MAX_ADDRESS, false},
    [IPC_F_TO] = {FORM_STR, IPC_MAX_ADDRESS, false},
    [IPC_F_BODY] = {FORM_BYTES, IPC_MAX_MESSAGE, false},
    [IPC_F_SUBJECT] = {FORM_BYTES, IPC_MAX_MESSAGE, false},
    [IPC_F_THREAD] = {FORM_STR, IPC_MAX_SHORT, false},
    [IPC_F_SHOW] = {FORM_STR, 16, false},
    [IPC_F_STATUS] = {FORM_BYTES, IPC_MAX_MESSAGE, false},
    [IPC_F_PRIORITY] = {FORM_I32, 0, false},
    [IPC_F_TOPIC] = {FORM_STR, 65535, false},
    [IPC_F_PAYLOAD] = {FORM_BYTES, IPC_MAX_MESSAGE, false},
    [IPC_F_QOS] = {FORM_U8, 0, false},
    [IPC_F_RETAIN] = {FORM_U8, 0, false},
    [IPC_F_NATIVE] = {FORM_BYTES, IPC_MAX_MESSAGE, false},
    [IPC_F_REQ_ID] = {FORM_U32, 0, false},
    [IPC_F_OP] = {FORM_STR, 64, false},
    [IPC_F_ARG] = {FORM_BYTES, IPC_MAX_MESSAGE, true},
    [IPC_F_CODE] = {FORM_U32, 0, false},
    [IPC_F_CONNS] = {FORM_U32, 0, false},
    [IPC_F_INSTANCE] = {FORM_U64, 0, false},
};

struct type_rule {
    const char *name;
    uint64_t allowed, required;
};

#define STANZA_FIELDS                                                                              \
    (BIT(IPC_F_SKIND) | BIT(IPC_F_TYPE) | BIT(IPC_F_ID) | BIT(IPC_F_FROM) | BIT(IPC_F_TO) |        \
     BIT(IPC_F_BODY) | BIT(IPC_F_SUBJECT) | BIT(IPC_F_THREAD) | BIT(IPC_F_SHOW) |                  \
     BIT(IPC_F_STATUS) | BIT(IPC_F_PRIORITY) | BIT(IPC_F_TOPIC) | BIT(IPC_F_PAYLOAD) |             \
     BIT(IPC_F_QOS) | BIT(IPC_F_RETAIN) | BIT(IPC_F_NATIVE) | BIT(IPC_F_TARGET) |                  \
     BIT(IPC_F_WORKER) | BIT(IPC_F_CONN) | BIT(IPC_F_REASON))

static const struct type_rule type_rules[] = {
    [IPC_LINK_HELLO] = {"HELLO", BIT(IPC_F_KIND) | BIT(IPC_F_PID) | BIT(IPC_F_INSTANCE),
                        BIT(IPC_F_KIND) | BIT(IPC_F_PID)},
    [IPC_LINK_WELCOME] = {"WELCOME", BIT(IPC_F_WORKER) | BIT(IPC_F_EPOCH),
                          BIT(IPC_F_WORKER) | BIT(IPC_F_EPOCH)},
    [IPC_LINK_HEARTBEAT] = {"HEARTBEAT", BIT(IPC_F_CONNS), 0},
    [IPC_LINK_REHELLO] = {"REHELLO", BIT(IPC_F_REASON), 0},
    [IPC_LINK_DISCONNECT] = {"DISCONNECT", BIT(IPC_F_REASON), 0},
    [IPC_LINK_BYE] = {"BYE", 0, 0},
    [IPC_ROUTE_ADD] = {"ROUTE_ADD", BIT(IPC_F_ADDRESS), BIT(IPC_F_ADDRESS)},
    [IPC_ROUTE_DEL] = {"ROUTE_DEL", BIT(IPC_F_ADDRESS), BIT(IPC_F_ADDRESS)},
    [IPC_SESSION_ADD] = {"SESSION_ADD",
                         BIT(IPC_F_FROM) | BIT(IPC_F_CONN) | BIT(IPC_F_PRIORITY) | BIT(IPC_F_SHOW) |
                             BIT(IPC_F_STATUS),
                         BIT(IPC_F_FROM) | BIT(IPC_F_CONN)},
    [IPC_SESSION_DEL] = {"SESSION_DEL", BIT(IPC_F_FROM), BIT(IPC_F_FROM)},
    [IPC_INTEREST_ADD] = {"INTEREST_ADD", BIT(IPC_F_TOPIC), BIT(IPC_F_TOPIC)},
    [IPC_INTEREST_DEL] = {"INTEREST_DEL", BIT(IPC_F_TOPIC), BIT(IPC_F_TOPIC)},
    [IPC_STANZA] = {"STANZA", STANZA_FIELDS, BIT(IPC_F_SKIND)},
    [IPC_REQUEST] = {"REQUEST",
                     BIT(IPC_F_TO) | BIT(IPC_F_REQ_ID) | BIT(IPC_F_OP) | BIT(IPC_F_ARG) |
                         BIT(IPC_F_WORKER),
                     BIT(IPC_F_TO) | BIT(IPC_F_REQ_ID) | BIT(IPC_F_OP)},
    [IPC_RESPONSE] = {"RESPONSE",
                      BIT(IPC_F_WORKER) | BIT(IPC_F_REQ_ID) | BIT(IPC_F_CODE) | BIT(IPC_F_REASON) |
                          BIT(IPC_F_ARG),
                      BIT(IPC_F_WORKER) | BIT(IPC_F_REQ_ID) | BIT(IPC_F_CODE)},
};

#define N_TYPES (sizeof(type_rules) / sizeof(type_rules[0]))

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static void set_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

const char *ipc_type_name(unsigned type)
{
    if (type < N_TYPES && type_rules[type].name != NULL)
        return type_rules[type].name;
    return "UNKNOWN";
}

const char *ipc_code_name(unsigned code)
{
    static const char *const names[] = {"ok",       "bad-request", "not-found",
                                        "conflict", "unavailable", "internal"};
    return code <= IPC_CODE_MAX ? names[code] : "unknown";
}

int ipc_frame_open(struct ipc_cursor *cur, const void *frame, size_t len, const char **error_r)
{
    const uint8_t *p = frame;

    if (len < 1) {
        *error_r = "empty frame";
        return -1;
    }
    if (len > IPC_MAX_FRAME) {
        *error_r = "frame too large";
        return -1;
    }
    if (p[0] != IPC_VERSION) {
        *error_r = "unsupported frame version";
        return -1;
    }
    cur->pos = p + 1;
    cur->end = p + len;
    return 0;
}

/* Stores one validated field value into the message. */
static void msg_set(struct ipc_msg *m, unsigned tag, const uint8_t *v, uint32_t len)
{
    struct ipc_slice s = {v, len};

    switch ((enum ipc_tag)tag) {
    case IPC_F_KIND:
        m->kind = s;
        break;
    case IPC_F_PID:
        m->pid = get_u32(v);
        break;
    case IPC_F_WORKER:
        m->worker = get_u32(v);
        break;
    case IPC_F_EPOCH:
        m->epoch = get_u64(v);
        break;
    case IPC_F_REASON:
        m->reason = s;
        break;
    case IPC_F_ADDRESS:
        m->address = s;
        break;
    case IPC_F_CONN:
        m->conn = get_u64(v);
        break;
    case IPC_F_TARGET:
        m->n_target++;
        break;
    case IPC_F_SKIND:
        m->skind = v[0];
        break;
    case IPC_F_TYPE:
        m->type_str = s;
        break;
    case IPC_F_ID:
        m->id = s;
        break;
    case IPC_F_FROM:
        m->from = s;
        break;
    case IPC_F_TO:
        m->to = s;
        break;
    case IPC_F_BODY:
        m->body_text = s;
        break;
    case IPC_F_SUBJECT:
        m->subject = s;
        break;
    case IPC_F_THREAD:
        m->thread = s;
        break;
    case IPC_F_SHOW:
        m->show = s;
        break;
    case IPC_F_STATUS:
        m->status = s;
        break;
    case IPC_F_PRIORITY:
        m->priority = (int32_t)get_u32(v);
        break;
    case IPC_F_TOPIC:
        m->topic = s;
        break;
    case IPC_F_PAYLOAD:
        m->payload = s;
        break;
    case IPC_F_QOS:
        m->qos = v[0];
        break;
    case IPC_F_RETAIN:
        m->retain = v[0];
        break;
    case IPC_F_NATIVE:
        m->native = s;
        break;
    case IPC_F_REQ_ID:
        m->req_id = get_u32(v);
        break;
    case IPC_F_OP:
        m->op = s;
        break;
    case IPC_F_ARG:
        m->n_arg++;
        break;
    case IPC_F_CODE:
        m->code = get_u32(v);
        break;
    case IPC_F_CONNS:
        m->conns = get_u32(v);
        break;
    case IPC_F_INSTANCE:
        m->instance = get_u64(v);
        break;
    case IPC_F_MAX:
        break;
    }
}

static int field_check(unsigned tag, const uint8_t *v, uint32_t len, const char **error_r)
{
    const struct field_rule *r = &field_rules[tag];

    switch (r->form) {
    case FORM_U8:
        if (len != 1) {
            *error_r = "bad u8 field width";
            return -1;
        }
        return 0;
    case FORM_U32:
    case FORM_I32:
        if (len != 4) {
            *error_r = "bad u32 field width";
            return -1;
        }
        return 0;
    case FORM_U64:
        if (len != 8) {
            *error_r = "bad u64 field width";
            return -1;
        }
        return 0;
    case FORM_STR:
        /* Strings are text: no NUL may hide inside one. */
        if (len > 0 && memchr(v, '\0', len) != NULL) {
            *error_r = "NUL inside a string field";
            return -1;
        }
        /* fall through */
    case FORM_BYTES:
        if (len > r->max_len) {
            *error_r = "field too long";
            return -1;
        }
        return 0;
    }
    return 0;
}

/* Value checks that depend on the field's meaning rather than its form. */
static int msg_check(const struct ipc_msg *m, const char **error_r)
{
    if ((m->present & BIT(IPC_F_SKIND)) && (m->skind < 1 || m->skind > STANZA_KIND_MAX)) {
        *error_r = "unknown stanza kind";
        return -1;
    }
    if ((m->present & BIT(IPC_F_QOS)) && m->qos > 2) {
        *error_r = "QoS out of range";
        return -1;
    }
    if ((m->present & BIT(IPC_F_RETAIN)) && m->retain > 1) {
        *error_r = "retain flag out of range";
        return -1;
    }
    if ((m->present & BIT(IPC_F_CODE)) && m->code > IPC_CODE_MAX) {
        *error_r = "unknown response code";
        return -1;
    }
    return 0;
}

int ipc_frame_next(struct ipc_cursor *cur, struct ipc_msg *m, const char **error_r)
{
    const uint8_t *p, *end;
    uint32_t body_len;
    uint8_t type;

    if (cur->pos == cur->end)
        return 0;
    if ((size_t)(cur->end - cur->pos) < IPC_MSG_HEADER) {
        *error_r = "truncated message header";
        return -1;
    }
    type = cur->pos[0];
    body_len = get_u32(cur->pos + 1);
    if (type >= N_TYPES || type_rules[type].name == NULL) {
        *error_r = "unknown message type";
        return -1;
    }
    if (body_len > IPC_MAX_MESSAGE) {
        *error_r = "message too large";
        return -1;
    }
    if ((size_t)(cur->end - cur->pos - IPC_MSG_HEADER) < body_len) {
        *error_r = "truncated message body";
        return -1;
    }
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->body = cur->pos + IPC_MSG_HEADER;
    m->body_len = body_len;

    p = m->body;
    end = p + body_len;
    while (p < end) {
        unsigned tag;
        uint32_t len;

        if ((size_t)(end - p) < IPC_FIELD_HEADER) {
            *error_r = "truncated field header";
            return -1;
        }
        tag = p[0];
        len = get_u32(p + 1);
        p += IPC_FIELD_HEADER;
        if ((size_t)(end - p) < len) {
            *error_r = "truncated field value";
            return -1;
        }
        if (tag == 0 || tag >= IPC_F_MAX || !(type_rules[type].allowed & BIT(tag))) {
            *error_r = "field not allowed in this message type";
            return -1;
        }
        if ((m->present & BIT(tag)) && !field_rules[tag].repeatable) {
            *error_r = "duplicate field";
            return -1;
        }
        if (field_check(tag, p, len, error_r) < 0)
            return -1;
        m->present |= BIT(tag);
        msg_set(m, tag, p, len);
        p += len;
    }
    if ((m->present & type_rules[type].required) != type_rules[type].required) {
        *error_r = "required field missing";
        return -1;
    }
    if (msg_check(m, error_r) < 0)
        return -1;
    cur->pos = end;
    return 1;
}

int ipc_msg_each(const struct ipc_msg *m, enum ipc_tag tag, uint32_t *offset,
                 struct ipc_slice *value_r)
{
    /* The body was validated by ipc_frame_next, so lengths can be trusted. */
    while (*offset + IPC_FIELD_HEADER <= m->body_len) {
        const uint8_t *f = m->body + *offset;
        uint32_t len = get_u32(f + 1);

        *offset += IPC_FIELD_HEADER + len;
        if (f[0] == tag) {
            value_r->ptr = f + IPC_FIELD_HEADER;
            value_r->len = len;
            return 1;
        }
    }
    return 0;
}

uint64_t ipc_slice_u64(struct ipc_slice s)
{
    return s.len == 8 ? get_u64(s.ptr) : 0;
}

bool ipc_slice_eq(struct ipc_slice s, const char *str)
{
    size_t n = strlen(str);
    return s.len == n && (n == 0 || memcmp(s.ptr, str, n) == 0);
}

char *ipc_slice_cstr(struct ipc_slice s, char *out, size_t out_size)
{
    size_t n = s.len < out_size - 1 ? s.len : out_size - 1;

    if (n > 0)
        memcpy(out, s.ptr, n);
    out[n] = '\0';
    return out;
}

void ipc_writer_init(struct ipc_writer *w)
{
    memset(w, 0, sizeof(*w));
}

void ipc_writer_free(struct ipc_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

void ipc_writer_reset(struct ipc_writer *w)
{
    w->len = 0;
    w->msg_start = 0;
    w->n_msgs = 0;
    w->failed = false;
}

static uint8_t *writer_reserve(struct ipc_writer *w, size_t n)
{
    if (w->failed)
        return NULL;
    if (w->len + n > IPC_MAX_FRAME) {
        w->failed = true;
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        uint8_t *nb;

        while (cap < w->len + n)
            cap *= 2;
        nb = realloc(w->buf, cap);
        if (nb == NULL) {
            w->failed = true;
            return NULL;
        }
        w->buf = nb;
        w->cap = cap;
    }
    w->len += n;
    return w->buf + w->len - n;
}

void ipc_msg_begin(struct ipc_writer *w, enum ipc_type type)
{
    uint8_t *p;

    w->failed = false;
    if (w->len == 0) {
        p = writer_reserve(w, 1);
        if (p == NULL)
            return;
        p[0] = IPC_VERSION;
    }
    w->msg_start = w->len;
    p = writer_reserve(w, IPC_MSG_HEADER);
    if (p == NULL)
        return;
    p[0] = (uint8_t)type;
    set_u32(p + 1, 0);
}

void ipc_put_bytes(struct ipc_writer *w, enum ipc_tag tag, const void *data, size_t len)
{
    uint8_t *p;

    if (len > IPC_MAX_MESSAGE) {
        w->failed = true;
        return;
    }
    p = writer_reserve(w, IPC_FIELD_HEADER + len);
    if (p == NULL)
        return;
    p[0] = (uint8_t)tag;
    set_u32(p + 1, (uint32_t)len);
    if (len > 0)
        memcpy(p + IPC_FIELD_HEADER, data, len);
}

void ipc_put_str(struct ipc_writer *w, enum ipc_tag tag, const char *str)
{
    ipc_put_bytes(w, tag, str, strlen(str));
}

void ipc_put_slice(struct ipc_writer *w, enum ipc_tag tag, struct ipc_slice s)
{
    ipc_put_bytes(w, tag, s.ptr, s.len);
}

void ipc_put_u8(struct ipc_writer *w, enum ipc_tag tag, uint8_t v)
{
    ipc_put_bytes(w, tag, &v, 1);
}

void ipc_put_u32(struct ipc_writer *w, enum ipc_tag tag, uint32_t v)
{
    uint8_t b[4];
    set_u32(b, v);
    ipc_put_bytes(w, tag, b, 4);
}

void ipc_put_i32(struct ipc_writer *w, enum ipc_tag tag, int32_t v)
{
    ipc_put_u32(w, tag, (uint32_t)v);
}

void ipc_put_u64(struct ipc_writer *w, enum ipc_tag tag, uint64_t v)
{
    uint8_t b[8];
    set_u32(b, (uint32_t)(v >> 32));
    set_u32(b + 4, (uint32_t)v);
    ipc_put_bytes(w, tag, b, 8);
}

void ipc_put_raw(struct ipc_writer *w, const void *fields, size_t len)
{
    uint8_t *p = writer_reserve(w, len);
    if (p != NULL && len > 0)
        memcpy(p, fields, len);
}

bool ipc_msg_end(struct ipc_writer *w)
{
    size_t body;

    if (w->msg_start == 0) {
        /* The header itself could not be reserved. */
        if (w->n_msgs == 0)
            w->len = 0;
        w->failed = false;
        return false;
    }
    body = w->len - w->msg_start - IPC_MSG_HEADER;
    if (w->failed || body > IPC_MAX_MESSAGE) {
        w->len = w->n_msgs == 0 ? 0 : w->msg_start;
        w->msg_start = 0;
        w->failed = false;
        return false;
    }
    set_u32(w->buf + w->msg_start + 1, (uint32_t)body);
    w->msg_start = 0;
    w->n_msgs++;
    return true;
}

const uint8_t *ipc_writer_frame(const struct ipc_writer *w, size_t *len_r)
{
    if (w->n_msgs == 0) {
        *len_r = 0;
        return NULL;
    }
    *len_r = w->len;
    return w->buf;
}
