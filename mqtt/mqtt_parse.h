/*
 * MQTT 3.1.1 and 5.0 packet codec: an I/O-free, resumable framer and
 * decoder for what arrives on a connection, and encoders for what goes
 * out. The worker feeds the bytes it read to mqtt_parser_feed(), which
 * yields one complete, validated packet at a time as a struct of counted
 * slices pointing into the input (or into the parser's own buffer when a
 * packet arrived in pieces); nothing is copied. Every malformed input gets
 * MQTT_ERROR with the MQTT 5 reason code the worker sends back (a 3.1.1
 * worker maps it to a CONNACK return code or just closes) and a short text
 * for the log. The encoders write into a caller buffer.
 */
#ifndef SB_MQTT_PARSE_H
#define SB_MQTT_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest packet the protocol can express (Remaining Length of four
   bytes). Workers lower the cap with mqtt_parser_set_max_packet(). */
#define MQTT_MAX_PACKET 268435455u
/* At most this many properties in one property block; a block is bounded by
   the packet size anyway, this bounds the work a peer can ask for. */
#define MQTT_MAX_PROPERTIES 256
/* Bytes of a fixed header: type byte and up to four length bytes. */
#define MQTT_MAX_HEADER 5

/* Protocol levels carried by CONNECT. */
#define MQTT_V311 4
#define MQTT_V5 5

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* MQTT 5 reason codes the codec itself reports (others pass through). */
#define MQTT_RC_SUCCESS 0x00
#define MQTT_RC_MALFORMED 0x81
#define MQTT_RC_PROTOCOL_ERROR 0x82
#define MQTT_RC_IMPLEMENTATION 0x83
#define MQTT_RC_UNSUPPORTED_VERSION 0x84
#define MQTT_RC_CLIENT_ID_INVALID 0x85
#define MQTT_RC_PACKET_TOO_LARGE 0x95

/* MQTT 5 property identifiers (table 2-4). */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* The wire kinds of property values; mqtt_prop_kind() gives 0 for an
   unknown identifier. */
enum mqtt_prop_kind {
    MQTT_KIND_BYTE = 1,
    MQTT_KIND_U16,
    MQTT_KIND_U32,
    MQTT_KIND_VARINT,
    MQTT_KIND_UTF8,
    MQTT_KIND_BINARY,
    MQTT_KIND_PAIR,
};

int mqtt_prop_kind(uint8_t id);

/* Subscription option bits (MQTT 5 §3.8.3.1; 3.1.1 has only the QoS). */
#define MQTT_SUB_QOS_MASK 0x03
#define MQTT_SUB_NO_LOCAL 0x04
#define MQTT_SUB_RETAIN_AS_PUBLISHED 0x08
#define MQTT_SUB_RETAIN_HANDLING_SHIFT 4

/* A counted slice; never NUL-terminated. */
struct mqtt_str {
    const uint8_t *data;
    size_t len;
};

/* A validated MQTT 5 property block. raw is the block without its length
   prefix (encoders copy it as is); the single-valued properties are
   decoded into the fields below, with bit (1 << id) of present set for
   each one that appeared. User Properties (and repeated Subscription
   Identifiers) are read with mqtt_props_next(). A 3.1.1 packet has an
   empty block. */
struct mqtt_props {
    struct mqtt_str raw;
    uint64_t present;
    unsigned user_count;
    unsigned sub_id_count;
    uint8_t payload_format, request_problem_info, request_response_info;
    uint8_t maximum_qos, retain_available, wildcard_sub_available;
    uint8_t sub_id_available, shared_sub_available;
    uint16_t server_keep_alive, receive_maximum, topic_alias_maximum, topic_alias;
    uint32_t message_expiry, session_expiry, will_delay, maximum_packet_size;
    uint32_t subscription_id; /* the first one */
    struct mqtt_str content_type, response_topic, correlation_data, assigned_client_id;
    struct mqtt_str auth_method, auth_data, response_info, server_reference, reason_string;
};

/* One property as mqtt_props_next() returns it: value for the integer
   kinds, str for strings and binary data, str and str2 for a User
   Property's name and value. */
struct mqtt_prop {
    uint8_t id;
    uint32_t value;
    struct mqtt_str str, str2;
};

struct mqtt_connect {
    struct mqtt_str protocol_name;
    uint8_t version; /* MQTT_V311 or MQTT_V5 */
    bool clean_start;
    bool will, will_retain;
    uint8_t will_qos;
    bool has_username, has_password;
    uint16_t keep_alive;
    struct mqtt_props props;
    struct mqtt_str client_id;
    struct mqtt_props will_props;
    struct mqtt_str will_topic, will_payload;
    struct mqtt_str username, password;
};

struct mqtt_connack {
    bool session_present;
    uint8_t reason; /* 3.1.1: the return code 0..5 */
    struct mqtt_props props;
};

struct mqtt_publish {
    uint8_t qos;
    bool dup, retain;
    struct mqtt_str topic; /* may be empty in MQTT 5 when a Topic Alias is set */
    uint16_t packet_id;    /* 0 for QoS 0 */
    struct mqtt_props props;
    struct mqtt_str payload;
};

/* PUBACK, PUBREC, PUBREL and PUBCOMP. */
struct mqtt_ack {
    uint16_t packet_id;
    uint8_t reason;
    struct mqtt_props props;
};

/* SUBSCRIBE and UNSUBSCRIBE: entries holds the payload, read with
   mqtt_filter_next(); count is how many filters it holds. */
struct mqtt_subscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    struct mqtt_str entries;
    unsigned count;
};

/* SUBACK and UNSUBACK: one reason code byte per filter (empty for a 3.1.1
   UNSUBACK). */
struct mqtt_suback {
    uint16_t packet_id;
    struct mqtt_props props;
    struct mqtt_str reasons;
};

/* DISCONNECT and AUTH. */
struct mqtt_reason {
    uint8_t reason;
    struct mqtt_props props;
};

struct mqtt_packet {
    uint8_t type;  /* enum mqtt_type */
    uint8_t flags; /* low nibble of the fixed header */
    size_t length; /* Remaining Length */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_ack ack;
        struct mqtt_subscribe sub;
        struct mqtt_suback suback;
        struct mqtt_reason reason;
    };
};

enum mqtt_result {
    MQTT_ERROR = -1,
    MQTT_OK = 0,
    MQTT_AGAIN = 1,
};

/* Why a packet was refused: the MQTT 5 reason code to send (0x81, 0x82,
   0x84, 0x85, 0x95...) and a short static text for the log. */
struct mqtt_error {
    uint8_t reason;
    const char *text;
};

struct mqtt_parser;

/* A parser for one connection. version is 0 until CONNECT was accepted
   (then only CONNECT decodes); max_packet caps the whole packet size
   (fixed header included, as MQTT 5's Maximum Packet Size counts it) and
   is at most MQTT_MAX_PACKET. Nothing is allocated until a packet arrives
   split across feeds. */
struct mqtt_parser *mqtt_parser_new(uint8_t version, uint32_t max_packet);
void mqtt_parser_free(struct mqtt_parser **parser);

/* Set the protocol version once CONNECT was accepted (MQTT_V311 or
   MQTT_V5), and the packet size cap (e.g. small before CONNECT). */
void mqtt_parser_set_version(struct mqtt_parser *parser, uint8_t version);
void mqtt_parser_set_max_packet(struct mqtt_parser *parser, uint32_t max_packet);

/* Consume bytes from data and try to complete one packet. *consumed_r
   tells how many bytes were used; the caller calls again with the rest.
   MQTT_OK: *packet_r holds a validated packet whose slices stay valid until
   the next call and while data is unchanged. MQTT_AGAIN: all of data was
   consumed and more is needed. MQTT_ERROR: *error_r says why; the parser
   stays in error and the connection must be closed (after sending the
   reason code where the protocol allows). */
enum mqtt_result mqtt_parser_feed(struct mqtt_parser *parser, const uint8_t *data, size_t len,
                                  size_t *consumed_r, struct mqtt_packet *packet_r,
                                  struct mqtt_error *error_r);

/* Release the parser's reassembly buffer if no packet is in progress, so an
   idle connection holds no packet memory. */
void mqtt_parser_trim(struct mqtt_parser *parser);

/* Decode one packet given its fixed header byte and its body (exactly
   Remaining Length bytes). version as for mqtt_parser_new(). */
enum mqtt_result mqtt_decode(uint8_t version, uint8_t header, const uint8_t *body, size_t len,
                             struct mqtt_packet *packet_r, struct mqtt_error *error_r);

/* Walk a validated property block: *pos starts at 0. Returns false at the
   end. */
bool mqtt_props_next(const struct mqtt_props *props, size_t *pos, struct mqtt_prop *prop_r);

/* Walk the filters of a decoded SUBSCRIBE or UNSUBSCRIBE: *pos starts at 0;
 *options_r gets the subscription options (0 for UNSUBSCRIBE). */
bool mqtt_filter_next(const struct mqtt_packet *packet, size_t *pos, struct mqtt_str *filter_r,
                      uint8_t *options_r);

/* Validation helpers, also used by the worker: a UTF-8 Encoded String's
   content (MQTT §1.5.4), a topic name (no wildcards) and a topic filter
   (MQTT §4.7.1; shared subscriptions checked when version is MQTT_V5). */
bool mqtt_utf8_valid(const uint8_t *s, size_t len);
bool mqtt_topic_name_valid(const uint8_t *s, size_t len);
bool mqtt_topic_filter_valid(uint8_t version, const uint8_t *s, size_t len);

/*
 * Encoding. A writer appends to a caller buffer and remembers overflow
 * instead of writing past it; with buf NULL it only counts.
 */
struct mqtt_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

void mqtt_writer_init(struct mqtt_writer *w, uint8_t *buf, size_t cap);

/* Append one MQTT 5 property to a block being built (use the block as
   struct mqtt_props.raw for the encoders below). The _int form picks the
   wire size from the identifier; _str writes a string or binary data;
   _user a User Property. Return false on overflow or a wrong kind. */
bool mqtt_prop_put_int(struct mqtt_writer *w, uint8_t id, uint32_t value);
bool mqtt_prop_put_str(struct mqtt_writer *w, uint8_t id, const void *data, size_t len);
bool mqtt_prop_put_user(struct mqtt_writer *w, const void *name, size_t name_len, const void *value,
                        size_t value_len);

/* Each encoder writes a whole packet into buf and returns its size, or 0
   when it does not fit in cap or the arguments cannot be encoded (QoS 3,
   a string over 65535 bytes, a packet over MQTT_MAX_PACKET). Properties
   (props.raw) are written for MQTT_V5 only; the short forms (no reason
   code, no properties) are used when they say the same. Only the fields
   that the packet carries are read. */
size_t mqtt_encode_connect(uint8_t *buf, size_t cap, const struct mqtt_connect *c);
size_t mqtt_encode_connack(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_connack *c);
size_t mqtt_encode_publish(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_publish *p);
/* type is MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL or MQTT_PUBCOMP. */
size_t mqtt_encode_ack(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                       const struct mqtt_ack *a);
size_t mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint8_t version, uint16_t packet_id,
                             const struct mqtt_props *props, const struct mqtt_str *filters,
                             const uint8_t *options, size_t count);
size_t mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, uint8_t version, uint16_t packet_id,
                               const struct mqtt_props *props, const struct mqtt_str *filters,
                               size_t count);
/* type is MQTT_SUBACK or MQTT_UNSUBACK (whose reasons 3.1.1 omits). */
size_t mqtt_encode_suback(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                          const struct mqtt_suback *s);
/* type is MQTT_PINGREQ or MQTT_PINGRESP. */
size_t mqtt_encode_ping(uint8_t *buf, size_t cap, uint8_t type);
/* type is MQTT_DISCONNECT or MQTT_AUTH (MQTT 5 only). */
size_t mqtt_encode_reason(uint8_t *buf, size_t cap, uint8_t version, uint8_t type,
                          const struct mqtt_reason *r);

/* Encode any decoded packet again (SUBSCRIBE and UNSUBSCRIBE copy their
   payload as it came): what a broker needs to forward, and what the tests
   use to check that decoding loses nothing. */
size_t mqtt_encode_packet(uint8_t *buf, size_t cap, uint8_t version,
                          const struct mqtt_packet *packet);

#endif
