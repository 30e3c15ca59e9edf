/*
 * MQTT packet encoders (see mqtt_parse.h): what the broker sends (CONNACK,
 * PUBLISH, the acknowledgements, SUBACK, UNSUBACK, PINGRESP, DISCONNECT,
 * AUTH) and, for tests and the load generator, what clients send. Each
 * packet's body is written twice by the same function: once only counting,
 * to learn the Remaining Length that precedes it, then for real, so there
 * is no intermediate buffer and no copy.
 */
#include "mqtt/mqtt_parse.h"

#include <string.h>

void mqtt_writer_init(struct mqtt_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf != NULL ? cap : SIZE_MAX;
    w->len = 0;
    w->overflow = false;
}

static void put_raw(struct mqtt_writer *w, const void *data, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    if (w->buf != NULL && n > 0)
        memcpy(w->buf + w->len, data, n);
    w->len += n;
}

static void put_u8(struct mqtt_writer *w, uint8_t v)
{
    put_raw(w, &v, 1);
}

static void put_u16(struct mqtt_writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

    put_raw(w, b, 2);
}

static void put_u32(struct mqtt_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    put_raw(w, b, 4);
}

static void put_varint(struct mqtt_writer *w, uint32_t v)
{
    if (v > MQTT_MAX_PACKET) {
        w->overflow = true;
        return;
    }
    do {
        uint8_t b = v & 0x7f;

        v >>= 7;
        put_u8(w, v > 0 ? b | 0x80 : b);
    } while (v > 0);
}

static void put_bin(struct mqtt_writer *w, const void *data, size_t n)
{
    if (n > UINT16_MAX) {
        w->overflow = true;
        return;
    }
    put_u16(w, (uint16_t)n);
    put_raw(w, data, n);
}

static void put_str(struct mqtt_writer *w, struct mqtt_str s)
{
    put_bin(w, s.data, s.len);
}

static void put_props(struct mqtt_writer *w, uint8_t version, const struct mqtt_props *props)
{
    size_t n = props != NULL ? props->raw.len : 0;

    if (version != MQTT_V5)
        return;
    if (n > MQTT_MAX_PACKET) {
        w->overflow = true;
        return;
    }
    put_varint(w, (uint32_t)n);
    put_raw(w, n > 0 ? props->raw.data : NULL, n);
}

static bool props_empty(const struct mqtt_props *props)
{
    return props == NULL || props->raw.len == 0;
}

bool mqtt_prop_put_int(struct mqtt_writer *w, uint8_t id, uint32_t value)
{
    switch (mqtt_prop_kind(id)) {
    case MQTT_KIND_BYTE:
        if (value > UINT8_MAX)
            return false;
        put_u8(w, id);
        put_u8(w, (uint8_t)value);
        break;
    case MQTT_KIND_U16:
        if (value > UINT16_MAX)
            return false;
        put_u8(w, id);
        put_u16(w, (uint16_t)value);
        break;
    case MQTT_KIND_U32:
        put_u8(w, id);
        put_u32(w, value);
        break;
    case MQTT_KIND_VARINT:
        if (value > MQTT_MAX_PACKET)
            return false;
        put_u8(w, id);
        put_varint(w, value);
        break;
    default:
        return false;
    }
    return !w->overflow;
}

bool mqtt_prop_put_str(struct mqtt_writer *w, uint8_t id, const void *data, size_t len)
{
    int kind = mqtt_prop_kind(id);

    if (kind != MQTT_KIND_UTF8 && kind != MQTT_KIND_BINARY)
        return false;
    put_u8(w, id);
    put_bin(w, data, len);
    return !w->overflow;
}

bool mqtt_prop_put_user(struct mqtt_writer *w, const void *name, size_t name_len, const void *value,
                        size_t value_len)
{
    put_u8(w, MQTT_PROP_USER);
    put_bin(w, name, name_len);
    put_bin(w, value, value_len);
    return !w->overflow;
}

/* Everything an encoder's body function may need. */
struct body {
    uint8_t version, type;
    const void *msg;
    const struct mqtt_str *filters;
    const uint8_t *options;
    size_t count;
    uint16_t packet_id;
    const struct mqtt_props *props;
};

typedef void body_fn(struct mqtt_writer *w, const struct body *b);

static size_t emit(uint8_t *buf, size_t cap, uint8_t header, body_fn *fn, const struct body *b)
{
    struct mqtt_writer w;
    size_t body_len;

    mqtt_writer_init(&w, NULL, 0);
    fn(&w, b);
    if (w.overflow || w.len > MQTT_MAX_PACKET)
        return 0;
    body_len = w.len;
    mqtt_writer_init(&w, buf, cap);
    put_u8(&w, header);
    put_varint(&w, (uint32_t)body_len);
    fn(&w, b);
    return w.overflow ? 0 : w.len;
}

static void connect_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_connect *c = b->msg;
    uint8_t flags = (uint8_t)(c->has_username << 7 | c->has_password << 6 | c->will_retain << 5 |
                              c->will_qos << 3 | c->will << 2 | c->clean_start << 1);

    put_bin(w, "MQTT", 4);
    put_u8(w, c->version);
    put_u8(w, flags);
    put_u16(w, c->keep_alive);
    put_props(w, c->version, &c->props);
    put_str(w, c->client_id);
    if (c->will) {
        put_props(w, c->version, &c->will_props);
        put_str(w, c->will_topic);
        put_str(w, c->will_payload);
    }
    if (c->has_username)
        put_str(w, c->username);
    if (c->has_password)
        put_str(w, c->password);
}

size_t mqtt_encode_connect(uint8_t *buf, size_t cap, const struct mqtt_connect *c)
{
    struct body b = {.msg = c};

    if ((c->version != MQTT_V311 && c->version != MQTT_V5) || c->will_qos > 2)
        return 0;
    return emit(buf, cap, MQTT_CONNECT << 4, connect_body, &b);
}

static void connack_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_connack *c = b->msg;

    put_u8(w, c->session_present ? 1 : 0);
    put_u8(w, c->reason);
    put_props(w, b->version, &c->props);
}

size_t mqtt_encode_connack(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_connack *c)
{
    struct body b = {.version = version, .msg = c};

    return emit(buf, cap, MQTT_CONNACK << 4, connack_body, &b);
}

static void publish_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_publish *p = b->msg;

    put_str(w, p->topic);
    if (p->qos > 0)
        put_u16(w, p->packet_id);
    put_props(w, b->version, &p->props);
    put_raw(w, p->payload.data, p->payload.len);
}

size_t mqtt_encode_publish(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_publish *p)
{
    struct body b = {.version = version, .msg = p};

    if (p->qos > 2)
        return 0;
    return emit(buf, cap, (uint8_t)(MQTT_PUBLISH << 4 | p->dup << 3 | p->qos << 1 | p->retain),
                publish_body, &b);
}

static void ack_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_ack *a = b->msg;

    put_u16(w, a->packet_id);
    if (b->version != MQTT_V5 || (a->reason == 0 && props_empty(&a->props)))
        return;
    put_u8(w, a->reason);
    if (!props_empty(&a->props))
        put_props(w, b->version, &a->props);
}

size_t mqtt_encode_ack(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                       const struct mqtt_ack *a)
{
    struct body b = {.version = version, .msg = a};

    if (type < MQTT_PUBACK || type > MQTT_PUBCOMP)
        return 0;
    return emit(buf, cap, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 0x02 : 0)), ack_body, &b);
}

static void filters_body(struct mqtt_writer *w, const struct body *b)
{
    put_u16(w, b->packet_id);
    put_props(w, b->version, b->props);
    for (size_t i = 0; i < b->count; i++) {
        put_str(w, b->filters[i]);
        if (b->type == MQTT_SUBSCRIBE)
            put_u8(w, b->options[i]);
    }
}

size_t mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint8_t version, uint16_t packet_id,
                             const struct mqtt_props *props, const struct mqtt_str *filters,
                             const uint8_t *options, size_t count)
{
    struct body b = {.version = version,
                     .type = MQTT_SUBSCRIBE,
                     .filters = filters,
                     .options = options,
                     .count = count,
                     .packet_id = packet_id,
                     .props = props};

    return emit(buf, cap, MQTT_SUBSCRIBE << 4 | 0x02, filters_body, &b);
}

size_t mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, uint8_t version, uint16_t packet_id,
                               const struct mqtt_props *props, const struct mqtt_str *filters,
                               size_t count)
{
    struct body b = {.version = version,
                     .type = MQTT_UNSUBSCRIBE,
                     .filters = filters,
                     .count = count,
                     .packet_id = packet_id,
                     .props = props};

    return emit(buf, cap, MQTT_UNSUBSCRIBE << 4 | 0x02, filters_body, &b);
}

static void suback_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_suback *s = b->msg;

    put_u16(w, s->packet_id);
    put_props(w, b->version, &s->props);
    if (b->type == MQTT_SUBACK || b->version == MQTT_V5)
        put_raw(w, s->reasons.data, s->reasons.len);
}

size_t mqtt_encode_suback(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                          const struct mqtt_suback *s)
{
    struct body b = {.version = version, .type = type, .msg = s};

    if (type != MQTT_SUBACK && type != MQTT_UNSUBACK)
        return 0;
    return emit(buf, cap, (uint8_t)(type << 4), suback_body, &b);
}

size_t mqtt_encode_ping(uint8_t *buf, size_t cap, uint8_t type)
{
    if ((type != MQTT_PINGREQ && type != MQTT_PINGRESP) || cap < 2)
        return 0;
    buf[0] = (uint8_t)(type << 4);
    buf[1] = 0;
    return 2;
}

static void reason_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_reason *r = b->msg;

    if (b->version != MQTT_V5 || (r->reason == 0 && props_empty(&r->props)))
        return;
    put_u8(w, r->reason);
    if (!props_empty(&r->props))
        put_props(w, b->version, &r->props);
}

size_t mqtt_encode_reason(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                          const struct mqtt_reason *r)
{
    struct body b = {.version = version, .msg = r};

    if (type != MQTT_DISCONNECT && (type != MQTT_AUTH || version != MQTT_V5))
        return 0;
    return emit(buf, cap, (uint8_t)(type << 4), reason_body, &b);
}

static void entries_body(struct mqtt_writer *w, const struct body *b)
{
    const struct mqtt_subscribe *s = b->msg;

    put_u16(w, s->packet_id);
    put_props(w, b->version, &s->props);
    put_raw(w, s->entries.data, s->entries.len);
}

size_t mqtt_encode_packet(uint8_t *buf, size_t cap, uint8_t version,
                          const struct mqtt_packet *packet)
{
    struct body b = {.version = version, .msg = &packet->sub};

    switch (packet->type) {
    case MQTT_CONNECT:
        return mqtt_encode_connect(buf, cap, &packet->connect);
    case MQTT_CONNACK:
        return mqtt_encode_connack(buf, cap, version, &packet->connack);
    case MQTT_PUBLISH:
        return mqtt_encode_publish(buf, cap, version, &packet->publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return mqtt_encode_ack(buf, cap, version, packet->type, &packet->ack);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return emit(buf, cap, (uint8_t)(packet->type << 4 | 0x02), entries_body, &b);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return mqtt_encode_suback(buf, cap, version, packet->type, &packet->suback);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return mqtt_encode_ping(buf, cap, packet->type);
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        return mqtt_encode_reason(buf, cap, version, packet->type, &packet->reason);
    default:
        return 0;
    }
}
