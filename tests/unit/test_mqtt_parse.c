/*
 * Unit tests of the MQTT packet codec (mqtt/mqtt_parse.c,
 * mqtt/mqtt_encode.c): every packet type encoded and decoded again in
 * MQTT 3.1.1 and 5.0, each fed whole, a byte at a time and in random
 * splits (which must all mean the same), and the malformed packets the
 * specifications' MUST statements describe, named by their [MQTT-x.y.z-n]
 * tags, each with the reason code the worker is to send.
 */
#include "mqtt/mqtt_parse.h"
#include "tests/unit/check.h"

#include <stdlib.h>

#define S(lit) ((struct mqtt_str){(const uint8_t *)(lit), sizeof(lit) - 1})
#define BYTES(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static bool str_eq(struct mqtt_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.data, lit, s.len) == 0;
}

/* Feed data to a parser in chunks of the given sizes (0: whole; 1: byte
   by byte; 2: random splits) and expect exactly one packet or an error.
   The re-encoded packet (or the error) is returned so modes can be
   compared. */
static enum mqtt_result feed_mode(uint8_t version, uint32_t max, const uint8_t *data, size_t len,
                                  int mode, uint8_t *out, size_t *out_len,
                                  struct mqtt_packet *pkt_r, struct mqtt_error *err_r)
{
    struct mqtt_parser *p = mqtt_parser_new(version, max);
    enum mqtt_result r = MQTT_AGAIN;
    size_t pos = 0;
    unsigned packets = 0;

    *out_len = 0;
    while (pos < len && r != MQTT_ERROR) {
        size_t chunk = len - pos, used;

        if (mode == 1)
            chunk = 1;
        else if (mode == 2)
            chunk = 1 + (size_t)rand() % chunk;
        while (chunk > 0) {
            r = mqtt_parser_feed(p, data + pos, chunk, &used, pkt_r, err_r);
            pos += used;
            chunk -= used;
            if (r == MQTT_ERROR)
                break;
            if (r == MQTT_OK) {
                packets++;
                *out_len = mqtt_encode_packet(out, 4096, version ? version : pkt_r->connect.version,
                                              pkt_r);
            }
            if (r == MQTT_AGAIN)
                break;
        }
    }
    if (r == MQTT_OK && mode != 0 && pkt_r->length > 0)
        memset(pkt_r, 0, sizeof(*pkt_r)); /* slices may point into the freed parser */
    mqtt_parser_free(&p);
    if (r != MQTT_ERROR && packets != 1)
        return MQTT_AGAIN;
    return r;
}

/* Parse whole, byte by byte and in random splits: all must agree. The
   packet returned is the whole-fed one, whose slices point into data. */
static enum mqtt_result parse_max(uint8_t version, uint32_t max, const uint8_t *data, size_t len,
                                  struct mqtt_packet *pkt_r, struct mqtt_error *err_r)
{
    static uint8_t first[4096], other[4096];
    size_t first_len, other_len;
    enum mqtt_result r = feed_mode(version, max, data, len, 0, first, &first_len, pkt_r, err_r);

    for (int mode = 1; mode <= 4; mode++) {
        struct mqtt_packet p2;
        struct mqtt_error e2 = {0, NULL};
        enum mqtt_result r2 =
            feed_mode(version, max, data, len, mode > 2 ? 2 : mode, other, &other_len, &p2, &e2);

        CHECK(r2 == r);
        if (r2 == MQTT_OK && r == MQTT_OK)
            CHECK(other_len == first_len && memcmp(first, other, first_len) == 0);
        if (r2 == MQTT_ERROR && r == MQTT_ERROR)
            CHECK(e2.reason == err_r->reason);
    }
    return r;
}

static enum mqtt_result parse(uint8_t version, const uint8_t *data, size_t len,
                              struct mqtt_packet *pkt_r)
{
    struct mqtt_error err = {0, NULL};
    enum mqtt_result r = parse_max(version, MQTT_MAX_PACKET, data, len, pkt_r, &err);

    if (r == MQTT_ERROR)
        fprintf(stderr, "  unexpected error: %s\n", err.text);
    return r;
}

/* Expect the packet to be refused with the reason code. */
static void expect_error_max(int line, uint8_t version, uint32_t max, const uint8_t *data,
                             size_t len, uint8_t reason)
{
    struct mqtt_packet pkt;
    struct mqtt_error err = {0, NULL};
    enum mqtt_result r = parse_max(version, max, data, len, &pkt, &err);

    check_count++;
    if (r != MQTT_ERROR || err.reason != reason) {
        check_failures++;
        fprintf(stderr, "line %d: expected error 0x%02x, got result %d reason 0x%02x (%s)\n", line,
                reason, r, r == MQTT_ERROR ? err.reason : 0, r == MQTT_ERROR ? err.text : "-");
    }
}

#define EXPECT_ERROR(version, data, reason)                                                        \
    expect_error_max(__LINE__, version, MQTT_MAX_PACKET, data, reason)

/* Build a packet from a header byte and a body. */
static size_t build(uint8_t *out, uint8_t header, const uint8_t *body, size_t len)
{
    size_t n = 0;
    size_t v = len;

    out[n++] = header;
    do {
        out[n] = v & 0x7f;
        v >>= 7;
        if (v > 0)
            out[n] |= 0x80;
        n++;
    } while (v > 0);
    memcpy(out + n, body, len);
    return n + len;
}

static void expect_body_error(int line, uint8_t version, uint8_t header, const uint8_t *body,
                              size_t len, uint8_t reason)
{
    uint8_t buf[1024];

    expect_error_max(line, version, MQTT_MAX_PACKET, buf, build(buf, header, body, len), reason);
}

#define EXPECT_BODY_ERROR(version, header, body, reason)                                           \
    expect_body_error(__LINE__, version, header, body, reason)

static void test_connect_round_trip(uint8_t version)
{
    uint8_t props_buf[128], will_props_buf[64], buf[512];
    struct mqtt_writer w;
    struct mqtt_connect c = {0};
    struct mqtt_packet pkt;
    size_t n;

    c.version = version;
    c.clean_start = true;
    c.keep_alive = 60;
    c.client_id = S("dev-1");
    c.will = true;
    c.will_qos = 1;
    c.will_retain = true;
    c.will_topic = S("dev/1/status");
    c.will_payload = S("gone");
    c.has_username = c.has_password = true;
    c.username = S("alice");
    c.password = S("s\0cret");
    if (version == MQTT_V5) {
        mqtt_writer_init(&w, props_buf, sizeof(props_buf));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_SESSION_EXPIRY, 3600));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_RECEIVE_MAXIMUM, 20));
        CHECK(mqtt_prop_put_user(&w, "k", 1, "v1", 2));
        CHECK(mqtt_prop_put_user(&w, "k", 1, "v2", 2));
        c.props.raw = (struct mqtt_str){props_buf, w.len};
        mqtt_writer_init(&w, will_props_buf, sizeof(will_props_buf));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_WILL_DELAY, 30));
        c.will_props.raw = (struct mqtt_str){will_props_buf, w.len};
    }
    n = mqtt_encode_connect(buf, sizeof(buf), &c);
    CHECK(n > 0);
    CHECK(parse(0, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_CONNECT);
    CHECK(pkt.connect.version == version);
    CHECK(pkt.connect.clean_start && pkt.connect.will && pkt.connect.will_retain);
    CHECK(pkt.connect.will_qos == 1 && pkt.connect.keep_alive == 60);
    CHECK(str_eq(pkt.connect.client_id, "dev-1"));
    CHECK(str_eq(pkt.connect.will_topic, "dev/1/status"));
    CHECK(str_eq(pkt.connect.will_payload, "gone"));
    CHECK(str_eq(pkt.connect.username, "alice"));
    CHECK(pkt.connect.password.len == 6 && memcmp(pkt.connect.password.data, "s\0cret", 6) == 0);
    if (version == MQTT_V5) {
        struct mqtt_prop prop;
        size_t pos = 0;
        unsigned users = 0;

        CHECK(pkt.connect.props.session_expiry == 3600);
        CHECK(pkt.connect.props.receive_maximum == 20);
        CHECK(pkt.connect.props.user_count == 2);
        CHECK(pkt.connect.will_props.will_delay == 30);
        while (mqtt_props_next(&pkt.connect.props, &pos, &prop))
            if (prop.id == MQTT_PROP_USER) {
                CHECK(str_eq(prop.str, "k"));
                CHECK(str_eq(prop.str2, users == 0 ? "v1" : "v2"));
                users++;
            }
        CHECK(users == 2);
    } else {
        CHECK(pkt.connect.props.raw.len == 0);
    }
    /* Too small a buffer: nothing, not a partial packet. */
    CHECK(mqtt_encode_connect(buf, n - 1, &c) == 0);
}

static void test_connack_round_trip(uint8_t version)
{
    uint8_t props_buf[64], buf[128];
    struct mqtt_writer w;
    struct mqtt_connack c = {.session_present = true, .reason = 0};
    struct mqtt_packet pkt;
    size_t n;

    if (version == MQTT_V5) {
        mqtt_writer_init(&w, props_buf, sizeof(props_buf));
        CHECK(mqtt_prop_put_str(&w, MQTT_PROP_ASSIGNED_CLIENT_ID, "auto-1", 6));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 10));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_MAXIMUM_QOS, 1));
        c.props.raw = (struct mqtt_str){props_buf, w.len};
    }
    n = mqtt_encode_connack(buf, sizeof(buf), version, &c);
    CHECK(n == (version == MQTT_V5 ? 5 + c.props.raw.len : 4));
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_CONNACK && pkt.connack.session_present && pkt.connack.reason == 0);
    if (version == MQTT_V5) {
        CHECK(str_eq(pkt.connack.props.assigned_client_id, "auto-1"));
        CHECK(pkt.connack.props.topic_alias_maximum == 10);
        CHECK(pkt.connack.props.maximum_qos == 1);
    }
}

static void test_publish_round_trip(uint8_t version)
{
    uint8_t props_buf[64], buf[256];
    struct mqtt_writer w;
    struct mqtt_packet pkt;

    for (uint8_t qos = 0; qos <= 2; qos++) {
        struct mqtt_publish p = {.qos = qos,
                                 .dup = qos > 0,
                                 .retain = qos == 1,
                                 .topic = S("a/b/c"),
                                 .packet_id = qos > 0 ? 7 : 0,
                                 .payload = S("hello\0world")};
        size_t n;

        if (version == MQTT_V5) {
            mqtt_writer_init(&w, props_buf, sizeof(props_buf));
            CHECK(mqtt_prop_put_int(&w, MQTT_PROP_PAYLOAD_FORMAT, 1));
            CHECK(mqtt_prop_put_str(&w, MQTT_PROP_RESPONSE_TOPIC, "r/1", 3));
            CHECK(mqtt_prop_put_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 5));
            CHECK(mqtt_prop_put_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 300));
            p.props.raw = (struct mqtt_str){props_buf, w.len};
        }
        n = mqtt_encode_publish(buf, sizeof(buf), version, &p);
        CHECK(n > 0);
        CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
        CHECK(pkt.type == MQTT_PUBLISH && pkt.publish.qos == qos);
        CHECK(pkt.publish.dup == (qos > 0) && pkt.publish.retain == (qos == 1));
        CHECK(str_eq(pkt.publish.topic, "a/b/c"));
        CHECK(pkt.publish.packet_id == (qos > 0 ? 7 : 0));
        CHECK(pkt.publish.payload.len == 11 &&
              memcmp(pkt.publish.payload.data, "hello\0world", 11) == 0);
        if (version == MQTT_V5) {
            CHECK(pkt.publish.props.payload_format == 1);
            CHECK(str_eq(pkt.publish.props.response_topic, "r/1"));
            CHECK(pkt.publish.props.sub_id_count == 2 && pkt.publish.props.subscription_id == 5);
        }
    }
    /* Invalid QoS is not encoded. */
    {
        struct mqtt_publish p = {.qos = 3, .topic = S("a")};

        CHECK(mqtt_encode_publish(buf, sizeof(buf), version, &p) == 0);
    }
}

static void test_ack_round_trip(uint8_t version)
{
    uint8_t props_buf[64], buf[128];
    struct mqtt_writer w;
    struct mqtt_packet pkt;

    for (uint8_t type = MQTT_PUBACK; type <= MQTT_PUBCOMP; type++) {
        struct mqtt_ack a = {.packet_id = 513, .reason = 0};
        size_t n = mqtt_encode_ack(buf, sizeof(buf), version, type, &a);

        CHECK(n == 4); /* the short form in both versions */
        CHECK(buf[0] == (type << 4 | (type == MQTT_PUBREL ? 2 : 0)));
        CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
        CHECK(pkt.type == type && pkt.ack.packet_id == 513 && pkt.ack.reason == 0);
        if (version != MQTT_V5)
            continue;
        a.reason = (type == MQTT_PUBREL || type == MQTT_PUBCOMP) ? 0x92 : 0x10;
        n = mqtt_encode_ack(buf, sizeof(buf), version, type, &a);
        CHECK(n == 5);
        CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
        CHECK(pkt.ack.reason == a.reason);
        mqtt_writer_init(&w, props_buf, sizeof(props_buf));
        CHECK(mqtt_prop_put_str(&w, MQTT_PROP_REASON_STRING, "why", 3));
        a.props.raw = (struct mqtt_str){props_buf, w.len};
        n = mqtt_encode_ack(buf, sizeof(buf), version, type, &a);
        CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
        CHECK(pkt.ack.reason == a.reason && str_eq(pkt.ack.props.reason_string, "why"));
    }
}

static void test_subscribe_round_trip(uint8_t version)
{
    const struct mqtt_str filters[] = {S("a/+/c"), S("#"), S("$share/g/x/#")};
    const uint8_t options[] = {0, 1, 2};
    const uint8_t options5[] = {MQTT_SUB_NO_LOCAL | 1,
                                MQTT_SUB_RETAIN_AS_PUBLISHED | 2 << MQTT_SUB_RETAIN_HANDLING_SHIFT,
                                2};
    uint8_t props_buf[16], buf[256];
    struct mqtt_writer w;
    struct mqtt_props props = {0};
    struct mqtt_packet pkt;
    struct mqtt_str f;
    uint8_t o;
    size_t n, pos = 0;
    unsigned i = 0;

    if (version == MQTT_V5) {
        mqtt_writer_init(&w, props_buf, sizeof(props_buf));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 268435455));
        props.raw = (struct mqtt_str){props_buf, w.len};
    }
    n = mqtt_encode_subscribe(buf, sizeof(buf), version, 9, &props, filters,
                              version == MQTT_V5 ? options5 : options, 3);
    CHECK(n > 0 && buf[0] == 0x82);
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_SUBSCRIBE && pkt.sub.packet_id == 9 && pkt.sub.count == 3);
    if (version == MQTT_V5)
        CHECK(pkt.sub.props.subscription_id == 268435455);
    while (mqtt_filter_next(&pkt, &pos, &f, &o)) {
        CHECK(i < 3 && f.len == filters[i].len && memcmp(f.data, filters[i].data, f.len) == 0);
        CHECK(o == (version == MQTT_V5 ? options5 : options)[i]);
        i++;
    }
    CHECK(i == 3);

    n = mqtt_encode_unsubscribe(buf, sizeof(buf), version, 10, NULL, filters, 2);
    CHECK(n > 0 && buf[0] == 0xa2);
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_UNSUBSCRIBE && pkt.sub.packet_id == 10 && pkt.sub.count == 2);
    pos = 0;
    CHECK(mqtt_filter_next(&pkt, &pos, &f, &o) && str_eq(f, "a/+/c") && o == 0);
    CHECK(mqtt_filter_next(&pkt, &pos, &f, &o) && str_eq(f, "#"));
    CHECK(!mqtt_filter_next(&pkt, &pos, &f, &o));
}

static void test_suback_round_trip(uint8_t version)
{
    const uint8_t codes[] = {0, 1, 2, 0x80};
    const uint8_t uncodes[] = {0, 0x11};
    uint8_t buf[128];
    struct mqtt_suback s = {.packet_id = 9, .reasons = {codes, sizeof(codes)}};
    struct mqtt_packet pkt;
    size_t n = mqtt_encode_suback(buf, sizeof(buf), version, MQTT_SUBACK, &s);

    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_SUBACK && pkt.suback.packet_id == 9);
    CHECK(pkt.suback.reasons.len == 4 && memcmp(pkt.suback.reasons.data, codes, 4) == 0);

    s.reasons = (struct mqtt_str){uncodes, sizeof(uncodes)};
    n = mqtt_encode_suback(buf, sizeof(buf), version, MQTT_UNSUBACK, &s);
    CHECK(n == (version == MQTT_V5 ? 7 : 4));
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_UNSUBACK && pkt.suback.packet_id == 9);
    CHECK(pkt.suback.reasons.len == (version == MQTT_V5 ? 2 : 0));
}

static void test_ping_disconnect_auth(uint8_t version)
{
    uint8_t props_buf[64], buf[128];
    struct mqtt_writer w;
    struct mqtt_reason r = {0};
    struct mqtt_packet pkt;
    size_t n;

    for (uint8_t type = MQTT_PINGREQ; type <= MQTT_PINGRESP; type++) {
        n = mqtt_encode_ping(buf, sizeof(buf), type);
        CHECK(n == 2 && buf[0] == type << 4 && buf[1] == 0);
        CHECK(parse(version, buf, n, &pkt) == MQTT_OK && pkt.type == type);
    }
    n = mqtt_encode_reason(buf, sizeof(buf), version, MQTT_DISCONNECT, &r);
    CHECK(n == 2 && buf[0] == 0xe0 && buf[1] == 0);
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK && pkt.type == MQTT_DISCONNECT);
    if (version != MQTT_V5) {
        CHECK(mqtt_encode_reason(buf, sizeof(buf), version, MQTT_AUTH, &r) == 0);
        return;
    }
    r.reason = 0x8e; /* session taken over */
    mqtt_writer_init(&w, props_buf, sizeof(props_buf));
    CHECK(mqtt_prop_put_str(&w, MQTT_PROP_SERVER_REFERENCE, "other", 5));
    r.props.raw = (struct mqtt_str){props_buf, w.len};
    n = mqtt_encode_reason(buf, sizeof(buf), version, MQTT_DISCONNECT, &r);
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.reason.reason == 0x8e && str_eq(pkt.reason.props.server_reference, "other"));

    r.reason = 0x18; /* continue authentication */
    mqtt_writer_init(&w, props_buf, sizeof(props_buf));
    CHECK(mqtt_prop_put_str(&w, MQTT_PROP_AUTH_METHOD, "SCRAM-SHA-1", 11));
    CHECK(mqtt_prop_put_str(&w, MQTT_PROP_AUTH_DATA, "\x01\x02", 2));
    r.props.raw = (struct mqtt_str){props_buf, w.len};
    n = mqtt_encode_reason(buf, sizeof(buf), version, MQTT_AUTH, &r);
    CHECK(parse(version, buf, n, &pkt) == MQTT_OK);
    CHECK(pkt.type == MQTT_AUTH && pkt.reason.reason == 0x18);
    CHECK(str_eq(pkt.reason.props.auth_method, "SCRAM-SHA-1"));
    CHECK(pkt.reason.props.auth_data.len == 2);
    CHECK(parse(version, BYTES(0xf0, 0x00), &pkt) == MQTT_OK && pkt.reason.reason == 0);
}

/* Several packets in one stream, in every split. */
static void test_stream(void)
{
    uint8_t buf[256];
    size_t n = 0;
    struct mqtt_publish p = {.qos = 1, .topic = S("t"), .packet_id = 1, .payload = S("x")};
    struct mqtt_parser *parser = mqtt_parser_new(MQTT_V5, 1024);
    unsigned packets = 0;

    n += mqtt_encode_publish(buf + n, sizeof(buf) - n, MQTT_V5, &p);
    n += mqtt_encode_ping(buf + n, sizeof(buf) - n, MQTT_PINGREQ);
    n += mqtt_encode_publish(buf + n, sizeof(buf) - n, MQTT_V5, &p);
    for (size_t i = 0; i < n; i++) {
        size_t used, off = 0;
        struct mqtt_packet pkt;
        struct mqtt_error err;
        enum mqtt_result r;

        while ((r = mqtt_parser_feed(parser, buf + i + off, 1 - off, &used, &pkt, &err)) ==
               MQTT_OK) {
            packets++;
            off += used;
            if (off == 1)
                break;
        }
        CHECK(r != MQTT_ERROR);
    }
    CHECK(packets == 3);
    mqtt_parser_trim(parser);
    mqtt_parser_free(&parser);
    CHECK(parser == NULL);
}

static void test_framing_errors(void)
{
    uint8_t buf[128];

    /* A Remaining Length of five bytes is malformed (§1.5.5, §2.1.4). */
    EXPECT_ERROR(MQTT_V5, BYTES(0x30, 0xff, 0xff, 0xff, 0xff, 0x7f), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V311, BYTES(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), MQTT_RC_MALFORMED);
    /* [MQTT-1.5.5-1]: the fewest bytes. */
    EXPECT_ERROR(MQTT_V5, BYTES(0xc0, 0x80, 0x00), MQTT_RC_MALFORMED);
    /* Over the configured cap: refused from the header alone, before any
       body arrives (0x95 Packet too large). */
    expect_error_max(__LINE__, MQTT_V5, 100, BYTES(0x30, 0xc8, 0x01), MQTT_RC_PACKET_TOO_LARGE);
    expect_error_max(__LINE__, MQTT_V5, 1024 * 1024, BYTES(0x30, 0xff, 0xff, 0xff, 0x7f),
                     MQTT_RC_PACKET_TOO_LARGE);
    /* The cap counts the fixed header: a 100-byte packet passes a 100 cap. */
    {
        struct mqtt_packet pkt;
        struct mqtt_error err;
        uint8_t body[98] = {0, 1, 't'};

        CHECK(parse_max(MQTT_V311, 100, buf, 0, &pkt, &err) == MQTT_AGAIN);
        size_t n = build(buf, 0x30, body, 98);
        CHECK(n == 100);
        CHECK(parse_max(MQTT_V311, 100, buf, n, &pkt, &err) == MQTT_OK);
        expect_error_max(__LINE__, MQTT_V311, 99, buf, n, MQTT_RC_PACKET_TOO_LARGE);
    }
    /* Packet type 0 is reserved; AUTH (15) exists only in MQTT 5. */
    EXPECT_ERROR(MQTT_V5, BYTES(0x00, 0x00), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V311, BYTES(0xf0, 0x00), MQTT_RC_MALFORMED);
    /* [MQTT-2.1.3-1]: reserved flags of the fixed header. */
    EXPECT_ERROR(MQTT_V5, BYTES(0xc1, 0x00), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V5, BYTES(0xd8, 0x00), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V5, BYTES(0xe2, 0x00), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V5, BYTES(0x41, 0x02, 0x00, 0x01), MQTT_RC_MALFORMED);
    /* [MQTT-3.6.1-1]: PUBREL's flags are 0010. */
    EXPECT_ERROR(MQTT_V5, BYTES(0x60, 0x02, 0x00, 0x01), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V311, BYTES(0x60, 0x02, 0x00, 0x01), MQTT_RC_MALFORMED);
    /* [MQTT-3.8.1-1], [MQTT-3.10.1-1]: SUBSCRIBE and UNSUBSCRIBE flags. */
    EXPECT_ERROR(MQTT_V311, BYTES(0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00),
                 MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V311, BYTES(0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'), MQTT_RC_MALFORMED);
    /* Bytes past the end of a packet's fields are malformed. */
    EXPECT_ERROR(MQTT_V5, BYTES(0xc0, 0x01, 0x00), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V311, BYTES(0x40, 0x03, 0x00, 0x01, 0x00), MQTT_RC_MALFORMED);
    EXPECT_ERROR(MQTT_V311, BYTES(0xe0, 0x01, 0x00), MQTT_RC_MALFORMED);
    /* A string longer than the packet. */
    EXPECT_ERROR(MQTT_V5, BYTES(0x30, 0x04, 0x00, 0x0a, 'a', 'b'), MQTT_RC_MALFORMED);
    /* [MQTT-3.1.0-1]: nothing before CONNECT; [MQTT-3.1.0-2]: one CONNECT. */
    EXPECT_ERROR(0, BYTES(0xc0, 0x00), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(
        MQTT_V5,
        BYTES(0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00),
        MQTT_RC_PROTOCOL_ERROR);
    /* After an error the parser stays failed. */
    {
        struct mqtt_parser *p = mqtt_parser_new(MQTT_V5, 1024);
        struct mqtt_packet pkt;
        struct mqtt_error err;
        size_t used;

        CHECK(mqtt_parser_feed(p, BYTES(0x00), &used, &pkt, &err) == MQTT_ERROR);
        CHECK(mqtt_parser_feed(p, BYTES(0xc0, 0x00), &used, &pkt, &err) == MQTT_ERROR);
        CHECK(used == 0 && err.reason == MQTT_RC_MALFORMED);
        mqtt_parser_free(&p);
    }
}

/* CONNECT with the given protocol level, connect flags and payload. */
static void connect_error(int line, uint8_t level, uint8_t flags, const uint8_t *payload,
                          size_t len, uint8_t reason)
{
    uint8_t body[256] = {0x00, 0x04, 'M', 'Q', 'T', 'T', level, flags, 0x00, 0x3c};
    size_t n = 10;

    if (level == MQTT_V5)
        body[n++] = 0x00; /* property length */
    memcpy(body + n, payload, len);
    expect_body_error(line, 0, 0x10, body, n + len, reason);
}

#define CONNECT_ERROR(level, flags, payload, reason)                                               \
    connect_error(__LINE__, level, flags, payload, reason)

static void test_connect_errors(void)
{
    struct mqtt_packet pkt;
    uint8_t buf[64];

    /* The baseline is accepted. */
    CHECK(parse(0, buf,
                build(buf, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c')),
                &pkt) == MQTT_OK);
    /* [MQTT-2.1.3-1]: CONNECT's fixed header flags are 0. */
    EXPECT_BODY_ERROR(0, 0x11,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'),
                      MQTT_RC_MALFORMED);
    /* [MQTT-3.1.2-1]: protocol name; [MQTT-3.1.2-2]: level (0x84). */
    EXPECT_BODY_ERROR(
        0, 0x10,
        BYTES(0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'),
        MQTT_RC_UNSUPPORTED_VERSION);
    CONNECT_ERROR(3, 0x02, BYTES(0x00, 0x01, 'c'), MQTT_RC_UNSUPPORTED_VERSION);
    CONNECT_ERROR(6, 0x02, BYTES(0x00, 0x01, 'c'), MQTT_RC_UNSUPPORTED_VERSION);
    /* [MQTT-3.1.2-3]: the reserved connect flag. */
    CONNECT_ERROR(MQTT_V311, 0x03, BYTES(0x00, 0x01, 'c'), MQTT_RC_MALFORMED);
    CONNECT_ERROR(MQTT_V5, 0x03, BYTES(0x00, 0x01, 'c'), MQTT_RC_MALFORMED);
    /* [MQTT-3.1.2-11]: Will QoS without Will; [MQTT-3.1.2-13]: Will
       Retain without Will; [MQTT-3.1.2-12]: Will QoS 3. */
    CONNECT_ERROR(MQTT_V311, 0x0a, BYTES(0x00, 0x01, 'c'), MQTT_RC_MALFORMED);
    CONNECT_ERROR(MQTT_V5, 0x22, BYTES(0x00, 0x01, 'c'), MQTT_RC_MALFORMED);
    CONNECT_ERROR(MQTT_V311, 0x1e, BYTES(0x00, 0x01, 'c', 0x00, 0x01, 't', 0x00, 0x01, 'p'),
                  MQTT_RC_MALFORMED);
    /* 3.1.1 [MQTT-3.1.2-22]: password without user name; MQTT 5 allows it. */
    CONNECT_ERROR(MQTT_V311, 0x42, BYTES(0x00, 0x01, 'c', 0x00, 0x01, 'p'), MQTT_RC_MALFORMED);
    CHECK(parse(0, buf,
                build(buf, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x42, 0x00, 0x3c, 0x00, 0x00, 0x01,
                            'c', 0x00, 0x01, 'p')),
                &pkt) == MQTT_OK);
    CHECK(pkt.connect.has_password && !pkt.connect.has_username);
    /* Will flag set but Will fields missing; username flag without one. */
    CONNECT_ERROR(MQTT_V311, 0x06, BYTES(0x00, 0x01, 'c'), MQTT_RC_MALFORMED);
    CONNECT_ERROR(MQTT_V311, 0x82, BYTES(0x00, 0x01, 'c'), MQTT_RC_MALFORMED);
    /* Will Topic is a topic name: no wildcards [MQTT-3.3.2-2]. */
    CONNECT_ERROR(MQTT_V311, 0x06, BYTES(0x00, 0x01, 'c', 0x00, 0x01, '#', 0x00, 0x01, 'p'),
                  MQTT_RC_PROTOCOL_ERROR);
    /* [MQTT-1.5.4-1], [MQTT-1.5.4-2] in a client identifier and user name. */
    CONNECT_ERROR(MQTT_V311, 0x02, BYTES(0x00, 0x02, 'c', 0x00), MQTT_RC_MALFORMED);
    CONNECT_ERROR(MQTT_V5, 0x02, BYTES(0x00, 0x03, 0xed, 0xa0, 0x80), MQTT_RC_MALFORMED);
    CONNECT_ERROR(MQTT_V5, 0x82, BYTES(0x00, 0x01, 'c', 0x00, 0x02, 0xc3, 0x28), MQTT_RC_MALFORMED);
    /* 3.1.1 [MQTT-3.1.3-8]: an empty client id needs a clean session
       (CONNACK 0x02; 0x85 in MQTT 5 terms). */
    CONNECT_ERROR(MQTT_V311, 0x00, BYTES(0x00, 0x00), MQTT_RC_CLIENT_ID_INVALID);
    /* Will Delay belongs in the Will Properties, not CONNECT's
       [MQTT-2.2.2-2 / §2.2.2.2]. */
    EXPECT_BODY_ERROR(0, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x02, 0x00, 0x3c, 0x05, 0x18, 0x00,
                            0x00, 0x00, 0x01, 0x00, 0x01, 'c'),
                      MQTT_RC_MALFORMED);
    /* Topic Alias is not a Will Property. */
    EXPECT_BODY_ERROR(0, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x06, 0x00, 0x3c, 0x00, 0x00, 0x01,
                            'c', 0x03, 0x23, 0x00, 0x01, 0x00, 0x01, 't', 0x00, 0x00),
                      MQTT_RC_MALFORMED);
    /* Receive Maximum 0 is a Protocol Error; so is Authentication Data
       without Authentication Method. */
    EXPECT_BODY_ERROR(0, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x02, 0x00, 0x3c, 0x03, 0x21, 0x00,
                            0x00, 0x00, 0x01, 'c'),
                      MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(0, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x02, 0x00, 0x3c, 0x04, 0x16, 0x00,
                            0x01, 'x', 0x00, 0x01, 'c'),
                      MQTT_RC_PROTOCOL_ERROR);
    /* Request Problem Information twice [§3.1.2.11.7]. */
    EXPECT_BODY_ERROR(0, 0x10,
                      BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x02, 0x00, 0x3c, 0x04, 0x17, 0x01,
                            0x17, 0x01, 0x00, 0x01, 'c'),
                      MQTT_RC_PROTOCOL_ERROR);
    /* A property block longer than the packet. */
    EXPECT_BODY_ERROR(
        0, 0x10, BYTES(0x00, 0x04, 'M', 'Q', 'T', 'T', 5, 0x02, 0x00, 0x3c, 0x7f, 0x00, 0x01, 'c'),
        MQTT_RC_MALFORMED);
}

static void test_publish_errors(void)
{
    struct mqtt_packet pkt;

    /* [MQTT-3.3.1-4]: QoS 3. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x36, BYTES(0x00, 0x01, 'a', 0x00, 0x01), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V5, 0x36, BYTES(0x00, 0x01, 'a', 0x00, 0x01, 0x00), MQTT_RC_MALFORMED);
    /* [MQTT-3.3.1-2]: DUP on QoS 0. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x38, BYTES(0x00, 0x01, 'a'), MQTT_RC_MALFORMED);
    /* [MQTT-2.2.1-3]: QoS > 0 needs a non-zero packet identifier. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x32, BYTES(0x00, 0x01, 'a', 0x00, 0x00), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0x34, BYTES(0x00, 0x01, 'a', 0x00, 0x00, 0x00),
                      MQTT_RC_PROTOCOL_ERROR);
    /* A QoS 1 PUBLISH too short to hold its packet identifier. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x32, BYTES(0x00, 0x01, 'a', 0x00), MQTT_RC_MALFORMED);
    /* [MQTT-3.3.2-2]: no wildcards in a topic name. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x03, 'a', '/', '+'), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, '#', 0x00), MQTT_RC_PROTOCOL_ERROR);
    /* [MQTT-4.7.3-1]: not empty; MQTT 5 allows it with a Topic Alias. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x00, 'x'), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x00, 0x00, 'x'), MQTT_RC_PROTOCOL_ERROR);
    {
        uint8_t buf[32];
        size_t n = build(buf, 0x30, BYTES(0x00, 0x00, 0x03, 0x23, 0x00, 0x02, 'x'));

        CHECK(parse(MQTT_V5, buf, n, &pkt) == MQTT_OK);
        CHECK(pkt.publish.topic.len == 0 && pkt.publish.props.topic_alias == 2);
        CHECK(str_eq(pkt.publish.payload, "x"));
    }
    /* Topic Alias 0 is a Protocol Error. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x00),
                      MQTT_RC_PROTOCOL_ERROR);
    /* [MQTT-1.5.4-1]: ill-formed UTF-8, surrogates, overlong forms;
       [MQTT-1.5.4-2]: U+0000. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x02, 0xc3, 0x28), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x03, 0xed, 0xbf, 0xbf), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x02, 0xc0, 0x80), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x03, 0xe0, 0x80, 0xaf), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x04, 0xf4, 0x90, 0x80, 0x80),
                      MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V311, 0x30, BYTES(0x00, 0x02, 0xe2, 0x82), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x03, 'a', 0x00, 'b', 0x00), MQTT_RC_MALFORMED);
    /* A user property with U+0000 in its value. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30,
                      BYTES(0x00, 0x01, 'a', 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 0x00),
                      MQTT_RC_MALFORMED);
    /* Well-formed multi-byte UTF-8 passes (é, €, U+10348). */
    {
        uint8_t buf[32];
        size_t n = build(buf, 0x30,
                         BYTES(0x00, 0x09, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x90, 0x8d, 0x88));

        CHECK(parse(MQTT_V311, buf, n, &pkt) == MQTT_OK && pkt.publish.topic.len == 9);
    }
    /* Duplicate Payload Format Indicator: Protocol Error. Two User
       Properties and two Subscription Identifiers are allowed. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, 'a', 0x04, 0x01, 0x00, 0x01, 0x01),
                      MQTT_RC_PROTOCOL_ERROR);
    /* Payload Format Indicator 2 is a Protocol Error. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, 'a', 0x02, 0x01, 0x02),
                      MQTT_RC_PROTOCOL_ERROR);
    /* Session Expiry Interval in a PUBLISH: wrong packet, malformed
       [§2.2.2.2]. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, 'a', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01),
                      MQTT_RC_MALFORMED);
    /* An unknown property identifier. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, 'a', 0x02, 0x7e, 0x00), MQTT_RC_MALFORMED);
    /* Response Topic with a wildcard [MQTT-3.3.2-14]. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x30, BYTES(0x00, 0x01, 'a', 0x04, 0x08, 0x00, 0x01, '+'),
                      MQTT_RC_PROTOCOL_ERROR);
    /* More properties than MQTT_MAX_PROPERTIES (0x83). */
    {
        static uint8_t body[2048], buf[2100];
        size_t n = 0;
        unsigned count = MQTT_MAX_PROPERTIES + 1;
        size_t plen = count * 5;

        body[n++] = 0x00;
        body[n++] = 0x01;
        body[n++] = 'a';
        body[n++] = (uint8_t)(0x80 | (plen & 0x7f));
        body[n++] = (uint8_t)(plen >> 7);
        for (unsigned i = 0; i < count; i++) {
            memcpy(body + n, (const uint8_t[]){0x26, 0x00, 0x00, 0x00, 0x00}, 5);
            n += 5;
        }
        expect_error_max(__LINE__, MQTT_V5, MQTT_MAX_PACKET, buf, build(buf, 0x30, body, n),
                         MQTT_RC_IMPLEMENTATION);
        /* With one fewer it passes. */
        plen -= 5;
        body[3] = (uint8_t)(0x80 | (plen & 0x7f));
        body[4] = (uint8_t)(plen >> 7);
        CHECK(parse(MQTT_V5, buf, build(buf, 0x30, body, n - 5), &pkt) == MQTT_OK);
        CHECK(pkt.publish.props.user_count == MQTT_MAX_PROPERTIES);
    }
}

static void test_subscribe_errors(void)
{
    static const char *bad[] = {"a/#/b",       "a#",          "a/b#",     "#/",       "a/b+",
                                "+a",          "a/+b/c",      "",         "$share/g", "$share//a",
                                "$share/g+/a", "$share/g#/a", "$share/g/"};
    static const char *good[] = {"#",  "+",   "a/+/b",  "+/+",          "/",         "a//b",
                                 "/#", "+/#", "$SYS/#", "$share/g/a/#", "$share/g/+"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t body[64] = {0x00, 0x01, 0x00}, buf[80];
        size_t len = strlen(bad[i]), n = 0;

        CHECK(!mqtt_topic_filter_valid(MQTT_V5, (const uint8_t *)bad[i], len));
        n = 3;
        body[n++] = 0x00;
        body[n++] = (uint8_t)len;
        memcpy(body + n, bad[i], len);
        n += len;
        body[n++] = 0x01;
        /* [MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.3-1], [MQTT-4.8.2-1, -2] */
        expect_error_max(__LINE__, MQTT_V5, MQTT_MAX_PACKET, buf, build(buf, 0x82, body, n),
                         MQTT_RC_MALFORMED);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(mqtt_topic_filter_valid(MQTT_V5, (const uint8_t *)good[i], strlen(good[i])));
    /* 3.1.1 has no shared subscriptions: "$share/g" is a plain filter. */
    CHECK(mqtt_topic_filter_valid(MQTT_V311, (const uint8_t *)"$share/g", 8));

    /* [MQTT-2.2.1-3]: zero packet identifier. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x82, BYTES(0x00, 0x00, 0x00, 0x01, 'a', 0x00),
                      MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V311, 0xa2, BYTES(0x00, 0x00, 0x00, 0x01, 'a'), MQTT_RC_PROTOCOL_ERROR);
    /* [MQTT-3.8.3-2] (3.1.1 [MQTT-3.8.3-3]), [MQTT-3.10.3-2]: no filter. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x82, BYTES(0x00, 0x01), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0x82, BYTES(0x00, 0x01, 0x00), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0xa2, BYTES(0x00, 0x01, 0x00), MQTT_RC_PROTOCOL_ERROR);
    /* A filter without its options byte. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x82, BYTES(0x00, 0x01, 0x00, 0x01, 'a'), MQTT_RC_MALFORMED);
    /* 3.1.1 [MQTT-3.8.3-4]: reserved option bits, QoS 3. */
    EXPECT_BODY_ERROR(MQTT_V311, 0x82, BYTES(0x00, 0x01, 0x00, 0x01, 'a', 0x04), MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V311, 0x82, BYTES(0x00, 0x01, 0x00, 0x01, 'a', 0x03), MQTT_RC_MALFORMED);
    /* MQTT 5 [MQTT-3.8.3-5]: reserved bits 6-7; QoS 3 malformed;
       Retain Handling 3 a Protocol Error. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x82, BYTES(0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x40),
                      MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V5, 0x82, BYTES(0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x03),
                      MQTT_RC_MALFORMED);
    EXPECT_BODY_ERROR(MQTT_V5, 0x82, BYTES(0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30),
                      MQTT_RC_PROTOCOL_ERROR);
    /* MQTT 5 [MQTT-3.8.3-4]: No Local on a shared subscription. */
    EXPECT_BODY_ERROR(
        MQTT_V5, 0x82,
        BYTES(0x00, 0x01, 0x00, 0x00, 0x0a, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x04),
        MQTT_RC_PROTOCOL_ERROR);
    /* Subscription Identifier twice in a SUBSCRIBE, or 0: Protocol Error;
       in an UNSUBSCRIBE: not allowed there. */
    EXPECT_BODY_ERROR(MQTT_V5, 0x82,
                      BYTES(0x00, 0x01, 0x04, 0x0b, 0x01, 0x0b, 0x02, 0x00, 0x01, 'a', 0x00),
                      MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0x82, BYTES(0x00, 0x01, 0x02, 0x0b, 0x00, 0x00, 0x01, 'a', 0x00),
                      MQTT_RC_PROTOCOL_ERROR);
    EXPECT_BODY_ERROR(MQTT_V5, 0xa2, BYTES(0x00, 0x01, 0x02, 0x0b, 0x01, 0x00, 0x01, 'a'),
                      MQTT_RC_MALFORMED);
    /* Bad UTF-8 in a filter. */
    EXPECT_BODY_ERROR(MQTT_V311, 0xa2, BYTES(0x00, 0x01, 0x00, 0x01, 0xff), MQTT_RC_MALFORMED);
}

static void test_ack_errors(void)
{
    /* [MQTT-2.2.1-3] family: a zero packet identifier never matches. */
    EXPECT_ERROR(MQTT_V311, BYTES(0x40, 0x02, 0x00, 0x00), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V5, BYTES(0x62, 0x02, 0x00, 0x00), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V311, BYTES(0x40, 0x01, 0x00), MQTT_RC_MALFORMED);
    /* Reason codes outside each packet's list. */
    EXPECT_ERROR(MQTT_V5, BYTES(0x40, 0x03, 0x00, 0x01, 0x92), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V5, BYTES(0x62, 0x03, 0x00, 0x01, 0x10), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V5, BYTES(0xe0, 0x01, 0x01), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V5, BYTES(0xf0, 0x01, 0x01), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V311, BYTES(0x90, 0x03, 0x00, 0x01, 0x03), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V311, BYTES(0x20, 0x02, 0x00, 0x06), MQTT_RC_PROTOCOL_ERROR);
    /* [MQTT-3.2.2-1]: CONNACK reserved acknowledge flags. */
    EXPECT_ERROR(MQTT_V311, BYTES(0x20, 0x02, 0x02, 0x00), MQTT_RC_MALFORMED);
    /* Reason String twice in a PUBACK; Topic Alias in a PUBACK. */
    EXPECT_ERROR(
        MQTT_V5,
        BYTES(0x40, 0x0c, 0x00, 0x01, 0x10, 0x08, 0x1f, 0x00, 0x01, 'a', 0x1f, 0x00, 0x01, 'b'),
        MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V5, BYTES(0x40, 0x07, 0x00, 0x01, 0x10, 0x03, 0x23, 0x00, 0x01),
                 MQTT_RC_MALFORMED);
    /* SUBACK without reason codes; a 3.1.1 UNSUBACK with one. */
    EXPECT_ERROR(MQTT_V311, BYTES(0x90, 0x02, 0x00, 0x01), MQTT_RC_PROTOCOL_ERROR);
    EXPECT_ERROR(MQTT_V311, BYTES(0xb0, 0x03, 0x00, 0x01, 0x00), MQTT_RC_MALFORMED);
}

static void test_validators(void)
{
    CHECK(mqtt_utf8_valid((const uint8_t *)"", 0));
    CHECK(mqtt_utf8_valid((const uint8_t *)"\xef\xbf\xbf", 3)); /* U+FFFF: SHOULD NOT only */
    CHECK(!mqtt_utf8_valid((const uint8_t *)"\xf8\x88\x80\x80\x80", 5));
    CHECK(!mqtt_utf8_valid((const uint8_t *)"\x80", 1));
    CHECK(mqtt_topic_name_valid((const uint8_t *)"a/b", 3));
    CHECK(!mqtt_topic_name_valid((const uint8_t *)"", 0));
    CHECK(mqtt_prop_kind(MQTT_PROP_USER) == MQTT_KIND_PAIR);
    CHECK(mqtt_prop_kind(0x7f) == 0 && mqtt_prop_kind(0x04) == 0);
    {
        uint8_t buf[8];
        struct mqtt_writer w;

        mqtt_writer_init(&w, buf, sizeof(buf));
        CHECK(!mqtt_prop_put_int(&w, MQTT_PROP_USER, 1));
        CHECK(!mqtt_prop_put_int(&w, MQTT_PROP_PAYLOAD_FORMAT, 256));
        CHECK(!mqtt_prop_put_str(&w, MQTT_PROP_TOPIC_ALIAS, "x", 1));
        CHECK(mqtt_prop_put_int(&w, MQTT_PROP_MESSAGE_EXPIRY, 1));
        CHECK(w.len == 5);
        CHECK(!mqtt_prop_put_int(&w, MQTT_PROP_MESSAGE_EXPIRY, 1)); /* overflow */
    }
}

int main(void)
{
    srand(4);
    for (uint8_t v = MQTT_V311; v <= MQTT_V5; v++) {
        test_connect_round_trip(v);
        test_connack_round_trip(v);
        test_publish_round_trip(v);
        test_ack_round_trip(v);
        test_subscribe_round_trip(v);
        test_suback_round_trip(v);
        test_ping_disconnect_auth(v);
    }
    test_stream();
    test_framing_errors();
    test_connect_errors();
    test_publish_errors();
    test_subscribe_errors();
    test_ack_errors();
    test_validators();
    return check_result("test_mqtt_parse");
}
