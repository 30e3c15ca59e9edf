/*
 * The inter-process wire contract: every byte that crosses the broker is
 * described here, and only here. Bump IPC_VERSION on any incompatible change.
 *
 * Transport: ZeroMQ. Every worker owns one DEALER socket connected to the
 * broker's ROUTER. A ZeroMQ message (one part; the ROUTER's identity part is
 * ZeroMQ's own business) is a FRAME:
 *
 *     frame   = version:u8 message*              (at most IPC_MAX_FRAME bytes)
 *     message = type:u8 length:u32be body         (body at most IPC_MAX_MESSAGE)
 *     body    = field*
 *     field   = tag:u8 length:u32be value
 *
 * A frame carries several messages so that senders can batch: a worker
 * appends everything it produces in one event-loop turn and flushes once.
 * Integers are big-endian. Each message type has a fixed set of allowed and
 * required fields (ipc.c, ipc_rules); unknown types or tags, duplicates of a
 * non-repeatable tag, bad integer widths, over-long values, and frames that
 * are short or have trailing bytes are rejected as a whole. The decoder never
 * copies: a decoded message holds slices into the frame.
 *
 * Normalized stanzas (IPC_STANZA) carry the protocol-neutral form of a
 * message, presence, request, publish or call: kind, type, id, from, to and
 * typed fields, plus an optional native payload (for example the original XML)
 * so that XMPP-to-XMPP routing loses nothing. See ../shared/DESIGN.md.
 */
#ifndef SB_IPC_H
#define SB_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IPC_VERSION 1
#define IPC_MAX_FRAME (8u << 20)
#define IPC_MAX_MESSAGE (2u << 20)
/* Longest address: RFC 7622 §3 allows 1023 bytes per part of a JID. */
#define IPC_MAX_ADDRESS 3071
/* Longest short string (kind, type, id, op, show...). */
#define IPC_MAX_SHORT 1024
#define IPC_MSG_HEADER 5
#define IPC_FIELD_HEADER 5

enum ipc_type {
    /* worker -> broker, first message: KIND, PID; INSTANCE optional. */
    IPC_LINK_HELLO = 1,
    /* broker -> worker: WORKER (the id the broker gave it), EPOCH (changes when the broker
     * restarts). On receipt the worker announces its routes, sessions and interests. */
    IPC_LINK_WELCOME = 2,
    /* both ways, every heartbeat interval; CONNS (worker -> broker) optional. */
    IPC_LINK_HEARTBEAT = 3,
    /* broker -> worker: REASON. The broker does not know this peer (it restarted, or the
     * peer was declared dead): say HELLO again and re-announce. */
    IPC_LINK_REHELLO = 4,
    /* broker -> worker: REASON. The peer broke the contract and must exit; the supervisor
     * restarts it. */
    IPC_LINK_DISCONNECT = 5,
    /* worker -> broker: clean goodbye; the broker drops the peer's state at once. */
    IPC_LINK_BYE = 6,

    /* worker -> broker: ADDRESS is a domain or service address this worker serves. */
    IPC_ROUTE_ADD = 10,
    IPC_ROUTE_DEL = 11,
    /* worker -> broker: FROM (full address), CONN; PRIORITY, SHOW, STATUS optional.
     * SESSION_ADD for an address already present updates it. */
    IPC_SESSION_ADD = 12,
    IPC_SESSION_DEL = 13,
    /* worker -> broker: TOPIC is a topic filter (MQTT syntax: '+' and '#'). */
    IPC_INTEREST_ADD = 14,
    IPC_INTEREST_DEL = 15,

    /* A normalized stanza. worker -> broker: routed by TO (or TOPIC for publish).
     * broker -> worker: the same body with the TARGET connection ids appended, and WORKER
     * set to the sender's id. When nothing serves TO, the broker returns a stanza of TYPE
     * "error" with REASON (e.g. "service-unavailable"), FROM and TO swapped, and TARGET set
     * to the original CONN. */
    IPC_STANZA = 20,

    /* Request to a service (TO: "store", "broker"...): REQ_ID, OP, ARG*. The broker adds
     * WORKER, the requester's id, when forwarding. */
    IPC_REQUEST = 30,
    /* The reply: WORKER (whom to deliver to), REQ_ID, CODE (IPC_CODE_*), REASON, ARG*. */
    IPC_RESPONSE = 31,
};

enum ipc_tag {
    IPC_F_KIND = 1,      /* str: worker kind ("xmpp", "store"...) */
    IPC_F_PID = 2,       /* u32 */
    IPC_F_WORKER = 3,    /* u32: broker-assigned worker id */
    IPC_F_EPOCH = 4,     /* u64: broker incarnation */
    IPC_F_REASON = 5,    /* str */
    IPC_F_ADDRESS = 6,   /* str: route address */
    IPC_F_CONN = 7,      /* u64: connection id inside a worker */
    IPC_F_TARGET = 8,    /* u64, repeatable: delivery connection ids */
    IPC_F_SKIND = 9,     /* u8: enum stanza_kind */
    IPC_F_TYPE = 10,     /* str: stanza type ("chat", "unavailable", "get"...) */
    IPC_F_ID = 11,       /* str */
    IPC_F_FROM = 12,     /* str: address */
    IPC_F_TO = 13,       /* str: address or service */
    IPC_F_BODY = 14,     /* bytes */
    IPC_F_SUBJECT = 15,  /* bytes */
    IPC_F_THREAD = 16,   /* str */
    IPC_F_SHOW = 17,     /* str: away, chat, dnd, xa */
    IPC_F_STATUS = 18,   /* bytes */
    IPC_F_PRIORITY = 19, /* i32 */
    IPC_F_TOPIC = 20,    /* str */
    IPC_F_PAYLOAD = 21,  /* bytes */
    IPC_F_QOS = 22,      /* u8: 0..2 */
    IPC_F_RETAIN = 23,   /* u8: 0 or 1 */
    IPC_F_NATIVE = 24,   /* bytes: original protocol form */
    IPC_F_REQ_ID = 25,   /* u32 */
    IPC_F_OP = 26,       /* str */
    IPC_F_ARG = 27,      /* bytes, repeatable */
    IPC_F_CODE = 28,     /* u32: enum ipc_code */
    IPC_F_CONNS = 29,    /* u32: open connections */
    IPC_F_INSTANCE = 30, /* u64: worker incarnation (start time) */
    IPC_F_MAX = 31
};

enum stanza_kind {
    STANZA_MESSAGE = 1,
    STANZA_PRESENCE = 2,
    STANZA_IQ = 3,
    STANZA_PUBLISH = 4,
    STANZA_CALL = 5,
    STANZA_CONTROL = 6,
    STANZA_KIND_MAX = 6
};

enum ipc_code {
    IPC_CODE_OK = 0,
    IPC_CODE_BAD_REQUEST = 1, /* malformed arguments */
    IPC_CODE_NOT_FOUND = 2,   /* no such account, item... */
    IPC_CODE_CONFLICT = 3,    /* already exists */
    IPC_CODE_UNAVAILABLE = 4, /* service not connected; try again */
    IPC_CODE_INTERNAL = 5,    /* the service failed (database error...) */
    IPC_CODE_MAX = 5
};

/* A counted slice into a received frame; not NUL-terminated. */
struct ipc_slice {
    const uint8_t *ptr;
    uint32_t len;
};

/* One decoded message. Slices point into the frame, which must outlive it. */
struct ipc_msg {
    uint8_t type;
    uint64_t present; /* bit (1 << tag) for each tag seen */
    const uint8_t *body;
    uint32_t body_len;

    struct ipc_slice kind, reason, address, type_str, id, from, to, body_text, subject, thread,
        show, status, topic, payload, native, op;
    uint32_t pid, worker, req_id, code, conns;
    uint64_t epoch, conn, instance;
    int32_t priority;
    uint8_t skind, qos, retain;
    uint32_t n_target, n_arg; /* counts of the repeatable fields; see ipc_msg_each */
};

/* Walks the messages of one frame. */
struct ipc_cursor {
    const uint8_t *pos, *end;
};

/* Starts walking a frame; -1 with *error_r when the frame is empty, too
 * large or of another version. */
int ipc_frame_open(struct ipc_cursor *cur, const void *frame, size_t len, const char **error_r);
/* Decodes the next message into *msg_r. Returns 1 for a message, 0 at the
 * clean end of the frame, -1 with *error_r on any malformation (after which
 * the rest of the frame must be discarded). */
int ipc_frame_next(struct ipc_cursor *cur, struct ipc_msg *msg_r, const char **error_r);
/* Iterates a repeatable field (IPC_F_TARGET, IPC_F_ARG) of a decoded
 * message: set *offset to 0 first; returns 1 with the next value in
 * *value_r, 0 when there are no more. */
int ipc_msg_each(const struct ipc_msg *msg, enum ipc_tag tag, uint32_t *offset,
                 struct ipc_slice *value_r);
/* Reads an 8-byte TARGET value. */
uint64_t ipc_slice_u64(struct ipc_slice s);
bool ipc_slice_eq(struct ipc_slice s, const char *str);
/* Copies a slice into a NUL-terminated buffer, truncating; returns out. */
char *ipc_slice_cstr(struct ipc_slice s, char *out, size_t out_size);

const char *ipc_type_name(unsigned type);
const char *ipc_code_name(unsigned code);

/*
 * Building frames. A writer owns a growable buffer that is reused across
 * frames, so steady-state sending allocates nothing. A message that cannot
 * be encoded (over IPC_MAX_MESSAGE, frame full, out of memory) is removed
 * whole by ipc_msg_end(), which returns false; the frame's other messages
 * stay. Senders flush when ipc_writer_frame() grows past IPC_FLUSH_AT.
 */
#define IPC_FLUSH_AT (256u << 10)

struct ipc_writer {
    uint8_t *buf;
    size_t len, cap;
    size_t msg_start; /* offset of the open message's header, or 0 */
    uint32_t n_msgs;  /* messages in the frame */
    bool failed;      /* the open message could not be encoded */
};

void ipc_writer_init(struct ipc_writer *w);
void ipc_writer_free(struct ipc_writer *w);
/* Empties the frame (keeps the buffer). */
void ipc_writer_reset(struct ipc_writer *w);
/* Opens a message, starting the frame if needed. */
void ipc_msg_begin(struct ipc_writer *w, enum ipc_type type);
void ipc_put_bytes(struct ipc_writer *w, enum ipc_tag tag, const void *data, size_t len);
void ipc_put_str(struct ipc_writer *w, enum ipc_tag tag, const char *str);
void ipc_put_slice(struct ipc_writer *w, enum ipc_tag tag, struct ipc_slice s);
void ipc_put_u8(struct ipc_writer *w, enum ipc_tag tag, uint8_t v);
void ipc_put_u32(struct ipc_writer *w, enum ipc_tag tag, uint32_t v);
void ipc_put_i32(struct ipc_writer *w, enum ipc_tag tag, int32_t v);
void ipc_put_u64(struct ipc_writer *w, enum ipc_tag tag, uint64_t v);
/* Appends already-encoded fields (a received message's body), for
 * forwarding without re-encoding. */
void ipc_put_raw(struct ipc_writer *w, const void *fields, size_t len);
/* Closes the open message: true when it is in the frame, false when it was
 * dropped (and the frame restored to what it was before ipc_msg_begin). */
bool ipc_msg_end(struct ipc_writer *w);
/* The frame as built so far (NULL/0 when no message was added). */
const uint8_t *ipc_writer_frame(const struct ipc_writer *w, size_t *len_r);
#endif
