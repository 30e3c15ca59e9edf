/*
 * MQTT packet framer and decoder (see mqtt_parse.h). The framer keeps the
 * fixed header's state between feeds, so a peer may send one byte at a
 * time; a body that is whole in the caller's bytes is decoded where it
 * lies, and one that arrives in pieces is gathered in a buffer that grows
 * with what actually arrived (never past the packet size cap). The decoder
 * is a bounded cursor over the body: every length is checked against what
 * is left, every string validated, every reserved bit checked, and the
 * whole body must be used. Reason codes follow MQTT 5 §2.4 and §4.13:
 * 0x81 for what cannot be parsed or breaks a format rule, 0x82 for what
 * parses but breaks a protocol rule.
 */
#include "mqtt/mqtt_parse.h"

#include <stdlib.h>
#include <string.h>

enum parser_state {
    STATE_TYPE,
    STATE_LENGTH,
    STATE_BODY,
};

struct mqtt_parser {
    uint8_t version;
    uint32_t max_packet;
    enum parser_state state;
    uint8_t header;
    unsigned length_bytes;
    uint32_t remaining;
    /* Reassembly of a body that came in pieces. */
    uint8_t *buf;
    size_t cap, have;
    bool failed;
    struct mqtt_error error;
};

struct cursor {
    const uint8_t *p;
    size_t len, pos;
};

static enum mqtt_result fail(struct mqtt_error *error_r, uint8_t reason, const char *text)
{
    error_r->reason = reason;
    error_r->text = text;
    return MQTT_ERROR;
}

#define MALFORMED(text) fail(error_r, MQTT_RC_MALFORMED, text)
#define PROTOCOL(text) fail(error_r, MQTT_RC_PROTOCOL_ERROR, text)

static size_t left(const struct cursor *c)
{
    return c->len - c->pos;
}

static bool get_u8(struct cursor *c, uint8_t *v_r)
{
    if (left(c) < 1)
        return false;
    *v_r = c->p[c->pos++];
    return true;
}

static bool get_u16(struct cursor *c, uint16_t *v_r)
{
    if (left(c) < 2)
        return false;
    *v_r = (uint16_t)(c->p[c->pos] << 8 | c->p[c->pos + 1]);
    c->pos += 2;
    return true;
}

static bool get_u32(struct cursor *c, uint32_t *v_r)
{
    if (left(c) < 4)
        return false;
    *v_r = (uint32_t)c->p[c->pos] << 24 | (uint32_t)c->p[c->pos + 1] << 16 |
           (uint32_t)c->p[c->pos + 2] << 8 | c->p[c->pos + 3];
    c->pos += 4;
    return true;
}

/* A Variable Byte Integer: at most four bytes, in the fewest bytes
   [MQTT-1.5.5-1]. */
static bool get_varint(struct cursor *c, uint32_t *v_r)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < 4; i++) {
        uint8_t b;

        if (!get_u8(c, &b))
            return false;
        v |= (uint32_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            if (b == 0 && i > 0)
                return false;
            *v_r = v;
            return true;
        }
    }
    return false;
}

/* Binary Data or the bytes of a UTF-8 Encoded String: a two-byte length. */
static bool get_bin(struct cursor *c, struct mqtt_str *s_r)
{
    uint16_t n;

    if (!get_u16(c, &n) || left(c) < n)
        return false;
    s_r->data = c->p + c->pos;
    s_r->len = n;
    c->pos += n;
    return true;
}

static bool get_utf8(struct cursor *c, struct mqtt_str *s_r)
{
    return get_bin(c, s_r) && mqtt_utf8_valid(s_r->data, s_r->len);
}

bool mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t b = s[i];
        uint32_t cp;
        size_t n;

        if (b == 0)
            return false; /* U+0000 [MQTT-1.5.4-2] */
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf) {
            n = 1;
            cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
            n = 2;
            cp = b & 0x0f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            n = 3;
            cp = b & 0x07;
        } else {
            return false; /* continuation byte, overlong lead, or past U+10FFFF */
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates [MQTT-1.5.4-1], beyond Unicode. */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

bool mqtt_topic_name_valid(const uint8_t *s, size_t len)
{
    /* [MQTT-4.7.3-1] non-empty; [MQTT-3.3.2-2] no wildcards. */
    return len > 0 && memchr(s, '+', len) == NULL && memchr(s, '#', len) == NULL;
}

/* The levels of a filter: '#' only as the whole last level
   [MQTT-4.7.1-1], '+' only as a whole level [MQTT-4.7.1-2]. */
static bool filter_levels_valid(const uint8_t *s, size_t len)
{
    size_t start = 0;

    if (len == 0)
        return false; /* [MQTT-4.7.3-1] */
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        for (size_t k = start; k < i; k++) {
            if (s[k] == '#' && (i - start != 1 || i != len))
                return false;
            if (s[k] == '+' && i - start != 1)
                return false;
        }
        start = i + 1;
    }
    return true;
}

bool mqtt_topic_filter_valid(uint8_t version, const uint8_t *s, size_t len)
{
    static const char share[] = "$share/";
    const size_t share_len = sizeof(share) - 1;
    const uint8_t *slash;
    size_t name_len;

    if (version != MQTT_V5 || len < share_len || memcmp(s, share, share_len) != 0)
        return filter_levels_valid(s, len);
    /* $share/{ShareName}/{filter}: a non-empty name without wildcards or
       '/', then a filter [MQTT-4.8.2-1, MQTT-4.8.2-2]. */
    s += share_len;
    len -= share_len;
    slash = memchr(s, '/', len);
    if (slash == NULL)
        return false;
    name_len = (size_t)(slash - s);
    if (name_len == 0 || memchr(s, '+', name_len) != NULL || memchr(s, '#', name_len) != NULL)
        return false;
    return filter_levels_valid(slash + 1, len - name_len - 1);
}

/*
 * Properties. Bit 0 of the allowed mask stands for the Will Properties of
 * a CONNECT, bit N for packet type N.
 */
#define WILL (1u << 0)
#define P(t) (1u << MQTT_##t)

static const struct prop_rule {
    uint8_t kind;
    uint16_t allowed;
} prop_rules[0x2b] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = {MQTT_KIND_BYTE, P(PUBLISH) | WILL},
    [MQTT_PROP_MESSAGE_EXPIRY] = {MQTT_KIND_U32, P(PUBLISH) | WILL},
    [MQTT_PROP_CONTENT_TYPE] = {MQTT_KIND_UTF8, P(PUBLISH) | WILL},
    [MQTT_PROP_RESPONSE_TOPIC] = {MQTT_KIND_UTF8, P(PUBLISH) | WILL},
    [MQTT_PROP_CORRELATION_DATA] = {MQTT_KIND_BINARY, P(PUBLISH) | WILL},
    [MQTT_PROP_SUBSCRIPTION_ID] = {MQTT_KIND_VARINT, P(PUBLISH) | P(SUBSCRIBE)},
    [MQTT_PROP_SESSION_EXPIRY] = {MQTT_KIND_U32, P(CONNECT) | P(CONNACK) | P(DISCONNECT)},
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = {MQTT_KIND_UTF8, P(CONNACK)},
    [MQTT_PROP_SERVER_KEEP_ALIVE] = {MQTT_KIND_U16, P(CONNACK)},
    [MQTT_PROP_AUTH_METHOD] = {MQTT_KIND_UTF8, P(CONNECT) | P(CONNACK) | P(AUTH)},
    [MQTT_PROP_AUTH_DATA] = {MQTT_KIND_BINARY, P(CONNECT) | P(CONNACK) | P(AUTH)},
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = {MQTT_KIND_BYTE, P(CONNECT)},
    [MQTT_PROP_WILL_DELAY] = {MQTT_KIND_U32, WILL},
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = {MQTT_KIND_BYTE, P(CONNECT)},
    [MQTT_PROP_RESPONSE_INFO] = {MQTT_KIND_UTF8, P(CONNACK)},
    [MQTT_PROP_SERVER_REFERENCE] = {MQTT_KIND_UTF8, P(CONNACK) | P(DISCONNECT)},
    [MQTT_PROP_REASON_STRING] = {MQTT_KIND_UTF8, P(CONNACK) | P(PUBACK) | P(PUBREC) | P(PUBREL) |
                                                     P(PUBCOMP) | P(SUBACK) | P(UNSUBACK) |
                                                     P(DISCONNECT) | P(AUTH)},
    [MQTT_PROP_RECEIVE_MAXIMUM] = {MQTT_KIND_U16, P(CONNECT) | P(CONNACK)},
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = {MQTT_KIND_U16, P(CONNECT) | P(CONNACK)},
    [MQTT_PROP_TOPIC_ALIAS] = {MQTT_KIND_U16, P(PUBLISH)},
    [MQTT_PROP_MAXIMUM_QOS] = {MQTT_KIND_BYTE, P(CONNACK)},
    [MQTT_PROP_RETAIN_AVAILABLE] = {MQTT_KIND_BYTE, P(CONNACK)},
    [MQTT_PROP_USER] = {MQTT_KIND_PAIR, 0xfffe | WILL},
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = {MQTT_KIND_U32, P(CONNECT) | P(CONNACK)},
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = {MQTT_KIND_BYTE, P(CONNACK)},
    [MQTT_PROP_SUB_ID_AVAILABLE] = {MQTT_KIND_BYTE, P(CONNACK)},
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = {MQTT_KIND_BYTE, P(CONNACK)},
};

int mqtt_prop_kind(uint8_t id)
{
    return id < sizeof(prop_rules) / sizeof(prop_rules[0]) ? prop_rules[id].kind : 0;
}

/* Read one property's identifier and value; the block was (or is being)
   checked for kinds, so only lengths can fail here. */
static bool get_prop(struct cursor *c, struct mqtt_prop *prop_r)
{
    uint8_t v8;
    uint16_t v16;

    memset(prop_r, 0, sizeof(*prop_r));
    /* Identifiers are Variable Byte Integers, but all of them are below
       128: a longer one is unknown. */
    if (!get_u8(c, &prop_r->id) || mqtt_prop_kind(prop_r->id) == 0)
        return false;
    switch (prop_rules[prop_r->id].kind) {
    case MQTT_KIND_BYTE:
        if (!get_u8(c, &v8))
            return false;
        prop_r->value = v8;
        return true;
    case MQTT_KIND_U16:
        if (!get_u16(c, &v16))
            return false;
        prop_r->value = v16;
        return true;
    case MQTT_KIND_U32:
        return get_u32(c, &prop_r->value);
    case MQTT_KIND_VARINT:
        return get_varint(c, &prop_r->value);
    case MQTT_KIND_UTF8:
        return get_utf8(c, &prop_r->str);
    case MQTT_KIND_BINARY:
        return get_bin(c, &prop_r->str);
    default:
        return get_utf8(c, &prop_r->str) && get_utf8(c, &prop_r->str2);
    }
}

bool mqtt_props_next(const struct mqtt_props *props, size_t *pos, struct mqtt_prop *prop_r)
{
    struct cursor c = {props->raw.data, props->raw.len, *pos};

    if (*pos >= props->raw.len || !get_prop(&c, prop_r))
        return false;
    *pos = c.pos;
    return true;
}

/* The property block at the cursor, for packet type ctx (0: will). */
static enum mqtt_result get_props(struct cursor *c, unsigned ctx, struct mqtt_props *props,
                                  struct mqtt_error *error_r)
{
    struct cursor block;
    uint32_t n;
    unsigned count = 0;

    memset(props, 0, sizeof(*props));
    if (!get_varint(c, &n) || left(c) < n)
        return MALFORMED("bad property length");
    block = (struct cursor){c->p + c->pos, n, 0};
    props->raw.data = block.p;
    props->raw.len = n;
    c->pos += n;

    while (left(&block) > 0) {
        struct mqtt_prop prop;
        uint64_t bit;

        if (++count > MQTT_MAX_PROPERTIES)
            return fail(error_r, MQTT_RC_IMPLEMENTATION, "too many properties");
        if (!get_prop(&block, &prop))
            return MALFORMED("bad property");
        /* [MQTT-2.2.2-2]: an identifier not valid for its packet type is
           a Malformed Packet. */
        if ((prop_rules[prop.id].allowed & (1u << ctx)) == 0)
            return MALFORMED("property not allowed in this packet");
        bit = UINT64_C(1) << prop.id;
        if ((props->present & bit) && prop.id != MQTT_PROP_USER &&
            !(prop.id == MQTT_PROP_SUBSCRIPTION_ID && ctx == MQTT_PUBLISH))
            return PROTOCOL("duplicate property");
        props->present |= bit;

        switch (prop.id) {
        case MQTT_PROP_PAYLOAD_FORMAT:
        case MQTT_PROP_REQUEST_PROBLEM_INFO:
        case MQTT_PROP_REQUEST_RESPONSE_INFO:
        case MQTT_PROP_MAXIMUM_QOS:
        case MQTT_PROP_RETAIN_AVAILABLE:
        case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
        case MQTT_PROP_SUB_ID_AVAILABLE:
        case MQTT_PROP_SHARED_SUB_AVAILABLE:
            if (prop.value > 1)
                return PROTOCOL("property value must be 0 or 1");
            break;
        case MQTT_PROP_RECEIVE_MAXIMUM:
        case MQTT_PROP_MAXIMUM_PACKET_SIZE:
        case MQTT_PROP_TOPIC_ALIAS:
        case MQTT_PROP_SUBSCRIPTION_ID:
            if (prop.value == 0)
                return PROTOCOL("property value must not be 0");
            break;
        case MQTT_PROP_RESPONSE_TOPIC:
            /* [MQTT-3.3.2-14] */
            if (!mqtt_topic_name_valid(prop.str.data, prop.str.len))
                return PROTOCOL("bad Response Topic");
            break;
        default:
            break;
        }

        switch (prop.id) {
        case MQTT_PROP_PAYLOAD_FORMAT:
            props->payload_format = (uint8_t)prop.value;
            break;
        case MQTT_PROP_MESSAGE_EXPIRY:
            props->message_expiry = prop.value;
            break;
        case MQTT_PROP_CONTENT_TYPE:
            props->content_type = prop.str;
            break;
        case MQTT_PROP_RESPONSE_TOPIC:
            props->response_topic = prop.str;
            break;
        case MQTT_PROP_CORRELATION_DATA:
            props->correlation_data = prop.str;
            break;
        case MQTT_PROP_SUBSCRIPTION_ID:
            if (props->sub_id_count++ == 0)
                props->subscription_id = prop.value;
            break;
        case MQTT_PROP_SESSION_EXPIRY:
            props->session_expiry = prop.value;
            break;
        case MQTT_PROP_ASSIGNED_CLIENT_ID:
            props->assigned_client_id = prop.str;
            break;
        case MQTT_PROP_SERVER_KEEP_ALIVE:
            props->server_keep_alive = (uint16_t)prop.value;
            break;
        case MQTT_PROP_AUTH_METHOD:
            props->auth_method = prop.str;
            break;
        case MQTT_PROP_AUTH_DATA:
            props->auth_data = prop.str;
            break;
        case MQTT_PROP_REQUEST_PROBLEM_INFO:
            props->request_problem_info = (uint8_t)prop.value;
            break;
        case MQTT_PROP_WILL_DELAY:
            props->will_delay = prop.value;
            break;
        case MQTT_PROP_REQUEST_RESPONSE_INFO:
            props->request_response_info = (uint8_t)prop.value;
            break;
        case MQTT_PROP_RESPONSE_INFO:
            props->response_info = prop.str;
            break;
        case MQTT_PROP_SERVER_REFERENCE:
            props->server_reference = prop.str;
            break;
        case MQTT_PROP_REASON_STRING:
            props->reason_string = prop.str;
            break;
        case MQTT_PROP_RECEIVE_MAXIMUM:
            props->receive_maximum = (uint16_t)prop.value;
            break;
        case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
            props->topic_alias_maximum = (uint16_t)prop.value;
            break;
        case MQTT_PROP_TOPIC_ALIAS:
            props->topic_alias = (uint16_t)prop.value;
            break;
        case MQTT_PROP_MAXIMUM_QOS:
            props->maximum_qos = (uint8_t)prop.value;
            break;
        case MQTT_PROP_RETAIN_AVAILABLE:
            props->retain_available = (uint8_t)prop.value;
            break;
        case MQTT_PROP_USER:
            props->user_count++;
            break;
        case MQTT_PROP_MAXIMUM_PACKET_SIZE:
            props->maximum_packet_size = prop.value;
            break;
        case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
            props->wildcard_sub_available = (uint8_t)prop.value;
            break;
        case MQTT_PROP_SUB_ID_AVAILABLE:
            props->sub_id_available = (uint8_t)prop.value;
            break;
        case MQTT_PROP_SHARED_SUB_AVAILABLE:
            props->shared_sub_available = (uint8_t)prop.value;
            break;
        default:
            break;
        }
    }
    /* Authentication Data without a method is a Protocol Error. */
    if ((props->present & (UINT64_C(1) << MQTT_PROP_AUTH_DATA)) &&
        !(props->present & (UINT64_C(1) << MQTT_PROP_AUTH_METHOD)))
        return PROTOCOL("Authentication Data without Authentication Method");
    return MQTT_OK;
}

static enum mqtt_result get_props_v(struct cursor *c, uint8_t version, unsigned ctx,
                                    struct mqtt_props *props, struct mqtt_error *error_r)
{
    if (version != MQTT_V5) {
        memset(props, 0, sizeof(*props));
        return MQTT_OK;
    }
    return get_props(c, ctx, props, error_r);
}

static bool code_in(uint8_t code, const uint8_t *codes, size_t n)
{
    return memchr(codes, code, n) != NULL;
}

#define CODE_IN(code, ...)                                                                         \
    code_in(code, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

static bool ack_reason_valid(uint8_t type, uint8_t rc)
{
    if (type == MQTT_PUBREL || type == MQTT_PUBCOMP)
        return rc == 0x00 || rc == 0x92;
    return CODE_IN(rc, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99);
}

static bool suback_reason_valid(uint8_t version, uint8_t type, uint8_t rc)
{
    if (type == MQTT_UNSUBACK)
        return CODE_IN(rc, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91);
    if (version != MQTT_V5)
        return rc <= 2 || rc == 0x80; /* [MQTT-3.9.3-2] */
    return CODE_IN(rc, 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2);
}

static bool disconnect_reason_valid(uint8_t rc)
{
    return CODE_IN(rc, 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90,
                   0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
                   0xa0, 0xa1, 0xa2);
}

static bool connack_reason_valid(uint8_t version, uint8_t rc)
{
    if (version != MQTT_V5)
        return rc <= 5;
    return CODE_IN(rc, 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c,
                   0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f);
}

static enum mqtt_result decode_connect(struct cursor *c, uint8_t flags, struct mqtt_connect *m,
                                       struct mqtt_error *error_r)
{
    uint8_t cf;
    enum mqtt_result r;

    if (flags != 0)
        return MALFORMED("bad CONNECT flags"); /* [MQTT-2.1.3-1] */
    if (!get_bin(c, &m->protocol_name) || !get_u8(c, &m->version))
        return MALFORMED("truncated CONNECT");
    if (m->protocol_name.len != 4 || memcmp(m->protocol_name.data, "MQTT", 4) != 0)
        return fail(error_r, MQTT_RC_UNSUPPORTED_VERSION, "protocol name is not MQTT");
    if (m->version != MQTT_V311 && m->version != MQTT_V5)
        return fail(error_r, MQTT_RC_UNSUPPORTED_VERSION, "unsupported protocol level");
    if (!get_u8(c, &cf) || !get_u16(c, &m->keep_alive))
        return MALFORMED("truncated CONNECT");
    if (cf & 0x01)
        return MALFORMED("CONNECT reserved flag set"); /* [MQTT-3.1.2-3] */
    m->clean_start = (cf & 0x02) != 0;
    m->will = (cf & 0x04) != 0;
    m->will_qos = (cf >> 3) & 0x03;
    m->will_retain = (cf & 0x20) != 0;
    m->has_password = (cf & 0x40) != 0;
    m->has_username = (cf & 0x80) != 0;
    if (m->will_qos == 3)
        return MALFORMED("Will QoS 3"); /* [MQTT-3.1.2-12] */
    if (!m->will && (m->will_qos != 0 || m->will_retain))
        return MALFORMED("Will QoS or Retain without Will"); /* [MQTT-3.1.2-11, -13] */
    /* 3.1.1 [MQTT-3.1.2-22]: no password without a user name. */
    if (m->version == MQTT_V311 && m->has_password && !m->has_username)
        return MALFORMED("password without user name");
    if ((r = get_props_v(c, m->version, MQTT_CONNECT, &m->props, error_r)) != MQTT_OK)
        return r;
    if (!get_utf8(c, &m->client_id))
        return MALFORMED("bad client identifier");
    /* 3.1.1 [MQTT-3.1.3-7, -8]: an empty identifier needs a clean session;
       the server answers CONNACK 0x02, the MQTT 5 code being 0x85. */
    if (m->version == MQTT_V311 && m->client_id.len == 0 && !m->clean_start)
        return fail(error_r, MQTT_RC_CLIENT_ID_INVALID, "empty client identifier");
    if (m->will) {
        if ((r = get_props_v(c, m->version, 0, &m->will_props, error_r)) != MQTT_OK)
            return r;
        if (!get_utf8(c, &m->will_topic) || !get_bin(c, &m->will_payload))
            return MALFORMED("bad Will");
        if (!mqtt_topic_name_valid(m->will_topic.data, m->will_topic.len))
            return PROTOCOL("bad Will Topic");
    } else {
        memset(&m->will_props, 0, sizeof(m->will_props));
    }
    if (m->has_username && !get_utf8(c, &m->username))
        return MALFORMED("bad user name");
    if (m->has_password && !get_bin(c, &m->password))
        return MALFORMED("bad password");
    return MQTT_OK;
}

static enum mqtt_result decode_connack(struct cursor *c, uint8_t version, uint8_t flags,
                                       struct mqtt_connack *m, struct mqtt_error *error_r)
{
    uint8_t af;

    if (flags != 0)
        return MALFORMED("bad CONNACK flags");
    if (!get_u8(c, &af) || !get_u8(c, &m->reason))
        return MALFORMED("truncated CONNACK");
    if (af & 0xfe)
        return MALFORMED("CONNACK reserved flags set"); /* [MQTT-3.2.2-1] */
    m->session_present = af & 0x01;
    if (!connack_reason_valid(version, m->reason))
        return PROTOCOL("bad CONNACK reason code");
    return get_props_v(c, version, MQTT_CONNACK, &m->props, error_r);
}

static enum mqtt_result decode_publish(struct cursor *c, uint8_t version, uint8_t flags,
                                       struct mqtt_publish *m, struct mqtt_error *error_r)
{
    enum mqtt_result r;

    m->retain = flags & 0x01;
    m->qos = (flags >> 1) & 0x03;
    m->dup = (flags & 0x08) != 0;
    m->packet_id = 0;
    if (m->qos == 3)
        return MALFORMED("PUBLISH QoS 3"); /* [MQTT-3.3.1-4] */
    if (m->qos == 0 && m->dup)
        return MALFORMED("DUP set on QoS 0"); /* [MQTT-3.3.1-2] */
    if (!get_utf8(c, &m->topic))
        return MALFORMED("bad topic name");
    if (m->qos > 0) {
        if (!get_u16(c, &m->packet_id))
            return MALFORMED("truncated PUBLISH");
        if (m->packet_id == 0)
            return PROTOCOL("zero packet identifier"); /* [MQTT-2.2.1-3] */
    }
    if ((r = get_props_v(c, version, MQTT_PUBLISH, &m->props, error_r)) != MQTT_OK)
        return r;
    if (m->topic.len == 0) {
        /* MQTT 5 lets a Topic Alias stand for the name [MQTT-3.3.2-1,
           MQTT-4.7.3-1]. */
        if (!(m->props.present & (UINT64_C(1) << MQTT_PROP_TOPIC_ALIAS)))
            return PROTOCOL("empty topic name");
    } else if (!mqtt_topic_name_valid(m->topic.data, m->topic.len)) {
        return PROTOCOL("wildcard in topic name"); /* [MQTT-3.3.2-2] */
    }
    m->payload.data = c->p + c->pos;
    m->payload.len = left(c);
    c->pos = c->len;
    return MQTT_OK;
}

static enum mqtt_result decode_ack(struct cursor *c, uint8_t version, uint8_t type, uint8_t flags,
                                   struct mqtt_ack *m, struct mqtt_error *error_r)
{
    /* PUBREL's flags are 0010 [MQTT-3.6.1-1], the others' 0000. */
    if (flags != (type == MQTT_PUBREL ? 0x02 : 0x00))
        return MALFORMED("bad acknowledgement flags");
    if (!get_u16(c, &m->packet_id))
        return MALFORMED("truncated acknowledgement");
    if (m->packet_id == 0)
        return PROTOCOL("zero packet identifier");
    m->reason = 0;
    memset(&m->props, 0, sizeof(m->props));
    if (version != MQTT_V5 || left(c) == 0)
        return MQTT_OK;
    get_u8(c, &m->reason);
    if (!ack_reason_valid(type, m->reason))
        return PROTOCOL("bad acknowledgement reason code");
    if (left(c) == 0)
        return MQTT_OK;
    return get_props(c, type, &m->props, error_r);
}

/* The payload of SUBSCRIBE (with options) or UNSUBSCRIBE. */
static enum mqtt_result decode_filters(struct cursor *c, uint8_t version, uint8_t type,
                                       struct mqtt_subscribe *m, struct mqtt_error *error_r)
{
    m->entries.data = c->p + c->pos;
    m->entries.len = left(c);
    m->count = 0;
    while (left(c) > 0) {
        struct mqtt_str f;
        uint8_t o = 0;

        if (!get_utf8(c, &f) || (type == MQTT_SUBSCRIBE && !get_u8(c, &o)))
            return MALFORMED("bad topic filter");
        if (!mqtt_topic_filter_valid(version, f.data, f.len))
            return MALFORMED("invalid topic filter"); /* [MQTT-4.7.1-1, -2, 4.7.3-1] */
        if (version != MQTT_V5 && (o & 0xfc))
            return MALFORMED("reserved subscription option bits"); /* 3.1.1 [MQTT-3.8.3-4] */
        if (o & 0xc0)
            return MALFORMED("reserved subscription option bits"); /* [MQTT-3.8.3-5] */
        if ((o & MQTT_SUB_QOS_MASK) == 3)
            return MALFORMED("subscription QoS 3");
        if ((o >> MQTT_SUB_RETAIN_HANDLING_SHIFT) == 3)
            return PROTOCOL("Retain Handling 3");
        /* [MQTT-3.8.3-4]: No Local on a shared subscription. */
        if ((o & MQTT_SUB_NO_LOCAL) && version == MQTT_V5 && f.len >= 7 &&
            memcmp(f.data, "$share/", 7) == 0)
            return PROTOCOL("No Local on a shared subscription");
        m->count++;
    }
    /* [MQTT-3.8.3-2], [MQTT-3.10.3-2]: at least one filter. */
    if (m->count == 0)
        return PROTOCOL("no topic filter");
    return MQTT_OK;
}

static enum mqtt_result decode_subscribe(struct cursor *c, uint8_t version, uint8_t type,
                                         uint8_t flags, struct mqtt_subscribe *m,
                                         struct mqtt_error *error_r)
{
    enum mqtt_result r;

    if (flags != 0x02)
        return MALFORMED("bad SUBSCRIBE/UNSUBSCRIBE flags"); /* [MQTT-3.8.1-1, 3.10.1-1] */
    if (!get_u16(c, &m->packet_id))
        return MALFORMED("truncated SUBSCRIBE/UNSUBSCRIBE");
    if (m->packet_id == 0)
        return PROTOCOL("zero packet identifier"); /* [MQTT-2.2.1-3] */
    if ((r = get_props_v(c, version, type, &m->props, error_r)) != MQTT_OK)
        return r;
    return decode_filters(c, version, type, m, error_r);
}

static enum mqtt_result decode_suback(struct cursor *c, uint8_t version, uint8_t type,
                                      uint8_t flags, struct mqtt_suback *m,
                                      struct mqtt_error *error_r)
{
    enum mqtt_result r;

    if (flags != 0)
        return MALFORMED("bad SUBACK/UNSUBACK flags");
    if (!get_u16(c, &m->packet_id))
        return MALFORMED("truncated SUBACK/UNSUBACK");
    if (m->packet_id == 0)
        return PROTOCOL("zero packet identifier");
    if ((r = get_props_v(c, version, type, &m->props, error_r)) != MQTT_OK)
        return r;
    m->reasons.data = c->p + c->pos;
    m->reasons.len = left(c);
    c->pos = c->len;
    if (type == MQTT_UNSUBACK && version != MQTT_V5)
        return m->reasons.len == 0 ? MQTT_OK : MALFORMED("UNSUBACK too long");
    if (m->reasons.len == 0)
        return PROTOCOL("no reason codes");
    for (size_t i = 0; i < m->reasons.len; i++)
        if (!suback_reason_valid(version, type, m->reasons.data[i]))
            return PROTOCOL("bad SUBACK/UNSUBACK reason code");
    return MQTT_OK;
}

static enum mqtt_result decode_reason(struct cursor *c, uint8_t version, uint8_t type,
                                      uint8_t flags, struct mqtt_reason *m,
                                      struct mqtt_error *error_r)
{
    if (flags != 0)
        return MALFORMED("bad DISCONNECT/AUTH flags");
    m->reason = 0;
    memset(&m->props, 0, sizeof(m->props));
    if (type == MQTT_AUTH && version != MQTT_V5)
        return MALFORMED("AUTH in MQTT 3.1.1");
    if (left(c) == 0 || version != MQTT_V5)
        return MQTT_OK;
    get_u8(c, &m->reason);
    if (type == MQTT_AUTH ? !CODE_IN(m->reason, 0x00, 0x18, 0x19)
                          : !disconnect_reason_valid(m->reason))
        return PROTOCOL("bad reason code");
    if (left(c) == 0)
        return MQTT_OK;
    return get_props(c, type, &m->props, error_r);
}

enum mqtt_result mqtt_decode(uint8_t version, uint8_t header, const uint8_t *body, size_t len,
                             struct mqtt_packet *packet_r, struct mqtt_error *error_r)
{
    static const uint8_t empty[1];
    struct cursor c = {body != NULL ? body : empty, len, 0};
    enum mqtt_result r;
    uint8_t type = header >> 4, flags = header & 0x0f;

    memset(packet_r, 0, sizeof(*packet_r));
    packet_r->type = type;
    packet_r->flags = flags;
    packet_r->length = len;
    if (version == 0 && type != MQTT_CONNECT)
        return PROTOCOL("first packet is not CONNECT"); /* [MQTT-3.1.0-1] */
    if (version != 0 && type == MQTT_CONNECT)
        return PROTOCOL("second CONNECT"); /* [MQTT-3.1.0-2] */

    switch (type) {
    case MQTT_CONNECT:
        r = decode_connect(&c, flags, &packet_r->connect, error_r);
        break;
    case MQTT_CONNACK:
        r = decode_connack(&c, version, flags, &packet_r->connack, error_r);
        break;
    case MQTT_PUBLISH:
        r = decode_publish(&c, version, flags, &packet_r->publish, error_r);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        r = decode_ack(&c, version, type, flags, &packet_r->ack, error_r);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        r = decode_subscribe(&c, version, type, flags, &packet_r->sub, error_r);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        r = decode_suback(&c, version, type, flags, &packet_r->suback, error_r);
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        r = flags != 0 ? MALFORMED("bad PING flags") : MQTT_OK;
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        r = decode_reason(&c, version, type, flags, &packet_r->reason, error_r);
        break;
    default:
        r = MALFORMED("reserved packet type");
        break;
    }
    if (r != MQTT_OK)
        return r;
    if (left(&c) != 0)
        return MALFORMED("bytes after the end of the packet");
    return MQTT_OK;
}

bool mqtt_filter_next(const struct mqtt_packet *packet, size_t *pos, struct mqtt_str *filter_r,
                      uint8_t *options_r)
{
    struct cursor c = {packet->sub.entries.data, packet->sub.entries.len, *pos};
    uint8_t o = 0;

    if (*pos >= c.len || !get_bin(&c, filter_r) ||
        (packet->type == MQTT_SUBSCRIBE && !get_u8(&c, &o)))
        return false;
    *options_r = o;
    *pos = c.pos;
    return true;
}

/*
 * The framer.
 */
struct mqtt_parser *mqtt_parser_new(uint8_t version, uint32_t max_packet)
{
    struct mqtt_parser *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->version = version;
    mqtt_parser_set_max_packet(p, max_packet);
    return p;
}

void mqtt_parser_free(struct mqtt_parser **parser)
{
    if (*parser == NULL)
        return;
    free((*parser)->buf);
    free(*parser);
    *parser = NULL;
}

void mqtt_parser_set_version(struct mqtt_parser *parser, uint8_t version)
{
    parser->version = version;
}

void mqtt_parser_set_max_packet(struct mqtt_parser *parser, uint32_t max_packet)
{
    /* The smallest packet is two bytes; the largest the Remaining Length
       can describe is MQTT_MAX_PACKET plus its five header bytes. */
    if (max_packet < 2)
        max_packet = 2;
    if (max_packet > MQTT_MAX_PACKET + MQTT_MAX_HEADER)
        max_packet = MQTT_MAX_PACKET + MQTT_MAX_HEADER;
    parser->max_packet = max_packet;
}

void mqtt_parser_trim(struct mqtt_parser *parser)
{
    if (parser->state == STATE_BODY && parser->have > 0)
        return;
    free(parser->buf);
    parser->buf = NULL;
    parser->cap = 0;
}

static enum mqtt_result parser_fail(struct mqtt_parser *p, struct mqtt_error *error_r,
                                    uint8_t reason, const char *text)
{
    p->failed = true;
    p->error.reason = reason;
    p->error.text = text;
    *error_r = p->error;
    return MQTT_ERROR;
}

/* Make room for the body's next n bytes, growing geometrically so that a
   peer sending a byte at a time costs few reallocations, and never past
   the body's size. */
static bool reserve(struct mqtt_parser *p, size_t n)
{
    size_t need = p->have + n, cap;
    uint8_t *buf;

    if (need <= p->cap)
        return true;
    cap = p->cap < 256 ? 256 : p->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > p->remaining)
        cap = p->remaining;
    buf = realloc(p->buf, cap);
    if (buf == NULL)
        return false;
    p->buf = buf;
    p->cap = cap;
    return true;
}

static enum mqtt_result finish(struct mqtt_parser *p, const uint8_t *body,
                               struct mqtt_packet *packet_r, struct mqtt_error *error_r)
{
    enum mqtt_result r;

    p->state = STATE_TYPE;
    p->have = 0;
    r = mqtt_decode(p->version, p->header, body, p->remaining, packet_r, error_r);
    if (r == MQTT_ERROR)
        return parser_fail(p, error_r, error_r->reason, error_r->text);
    return r;
}

enum mqtt_result mqtt_parser_feed(struct mqtt_parser *p, const uint8_t *data, size_t len,
                                  size_t *consumed_r, struct mqtt_packet *packet_r,
                                  struct mqtt_error *error_r)
{
    size_t pos = 0, n;

    *consumed_r = 0;
    if (p->failed) {
        *error_r = p->error;
        return MQTT_ERROR;
    }
    if (p->state == STATE_TYPE) {
        if (len == 0)
            return MQTT_AGAIN;
        p->header = data[pos++];
        if ((p->header >> 4) == 0)
            return parser_fail(p, error_r, MQTT_RC_MALFORMED, "reserved packet type 0");
        p->state = STATE_LENGTH;
        p->length_bytes = 0;
        p->remaining = 0;
    }
    while (p->state == STATE_LENGTH) {
        uint8_t b;

        if (pos == len) {
            *consumed_r = pos;
            return MQTT_AGAIN;
        }
        b = data[pos++];
        p->remaining |= (uint32_t)(b & 0x7f) << (7 * p->length_bytes);
        p->length_bytes++;
        if (b & 0x80) {
            if (p->length_bytes == 4)
                return parser_fail(p, error_r, MQTT_RC_MALFORMED,
                                   "Remaining Length over four bytes");
            continue;
        }
        if (b == 0 && p->length_bytes > 1) /* [MQTT-1.5.5-1] */
            return parser_fail(p, error_r, MQTT_RC_MALFORMED, "Remaining Length not minimal");
        if (1 + (uint64_t)p->length_bytes + p->remaining > p->max_packet)
            return parser_fail(p, error_r, MQTT_RC_PACKET_TOO_LARGE, "packet too large");
        p->state = STATE_BODY;
        p->have = 0;
    }

    /* The whole body is here: decode it where it lies. */
    if (p->have == 0 && len - pos >= p->remaining) {
        *consumed_r = pos + p->remaining;
        return finish(p, data + pos, packet_r, error_r);
    }
    n = len - pos;
    if (n > p->remaining - p->have)
        n = p->remaining - p->have;
    if (n > 0) {
        if (!reserve(p, n))
            return parser_fail(p, error_r, MQTT_RC_IMPLEMENTATION, "out of memory");
        memcpy(p->buf + p->have, data + pos, n);
        p->have += n;
        pos += n;
    }
    *consumed_r = pos;
    if (p->have < p->remaining)
        return MQTT_AGAIN;
    return finish(p, p->buf, packet_r, error_r);
}
