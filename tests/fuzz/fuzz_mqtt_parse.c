/*
 * Fuzz target for the MQTT packet codec (mqtt/mqtt_parse.c,
 * mqtt/mqtt_encode.c).
 *
 * Input: byte 0 chooses the session state and limits: bits 0-1 the
 * protocol version the parser starts with (0: before CONNECT, 1: 3.1.1,
 * 2 and 3: 5.0), bit 2 a small packet size cap (64 bytes) instead of
 * 1 MiB, bit 3 whether the second run feeds one byte at a time or in two
 * chunks split at byte 1. The rest is the stream. It is parsed twice, once
 * whole and once split; as a worker does, a CONNECT accepted before the
 * version is known sets it. Every event (packet re-encoded, error reason)
 * is hashed: both runs must give the same hash, since how input is split
 * must never change what it means. Every packet is also re-encoded,
 * decoded and re-encoded again, which must give the same bytes.
 */
#include "mqtt/mqtt_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FLAG_SMALL 0x04
#define FLAG_BYTES 0x08

struct run {
    struct mqtt_parser *parser;
    uint8_t version;
    uint64_t hash;
    unsigned events;
    uint8_t *scratch, *scratch2;
    size_t scratch_cap;
};

static void hash_bytes(struct run *r, const void *data, size_t len)
{
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++)
        r->hash = (r->hash ^ p[i]) * UINT64_C(1099511628211);
}

static void on_packet(struct run *r, const struct mqtt_packet *pkt)
{
    struct mqtt_packet again;
    struct mqtt_error err;
    size_t n, n2, h;

    /* A CONNECT decoded before the version was known sets it; the
       re-encoding below uses the version the packet was decoded with. */
    uint8_t version = r->version;

    if (pkt->type == MQTT_CONNECT) {
        version = pkt->connect.version;
        r->version = version;
        mqtt_parser_set_version(r->parser, version);
    }
    n = mqtt_encode_packet(r->scratch, r->scratch_cap, version, pkt);
    if (n == 0)
        abort(); /* every decoded packet can be encoded */
    hash_bytes(r, r->scratch, n);
    r->events++;

    /* The re-encoding may use a short form, so find its body after its
       own fixed header. */
    h = 1;
    while (r->scratch[h] & 0x80)
        h++;
    h++;
    if (mqtt_decode(pkt->type == MQTT_CONNECT ? 0 : version, r->scratch[0], r->scratch + h, n - h,
                    &again, &err) != MQTT_OK) {
        fprintf(stderr, "re-encoded packet does not decode: %s\n", err.text);
        abort();
    }
    n2 = mqtt_encode_packet(r->scratch2, r->scratch_cap, version, &again);
    if (n2 != n || memcmp(r->scratch, r->scratch2, n) != 0) {
        fprintf(stderr, "re-encoding is not stable\n");
        abort();
    }
}

/* Feed one chunk, handling every packet it completes. Returns false after
   an error. */
static bool feed(struct run *r, const uint8_t *data, size_t len)
{
    while (true) {
        struct mqtt_packet pkt;
        struct mqtt_error err;
        size_t used;
        enum mqtt_result res = mqtt_parser_feed(r->parser, data, len, &used, &pkt, &err);

        if (used > len)
            abort();
        data += used;
        len -= used;
        if (res == MQTT_ERROR) {
            hash_bytes(r, &err.reason, 1);
            hash_bytes(r, err.text, strlen(err.text));
            r->events++;
            return false;
        }
        if (res == MQTT_AGAIN) {
            if (len != 0)
                abort(); /* AGAIN means everything was consumed */
            return true;
        }
        on_packet(r, &pkt);
        if (len == 0)
            return true;
    }
}

static void run_init(struct run *r, uint8_t version, uint32_t max, size_t cap)
{
    memset(r, 0, sizeof(*r));
    r->parser = mqtt_parser_new(version, max);
    r->version = version;
    r->hash = UINT64_C(14695981039346656037);
    /* Room for any packet the cap admits, re-encoded. */
    r->scratch_cap = cap;
    r->scratch = malloc(cap);
    r->scratch2 = malloc(cap);
    if (r->parser == NULL || r->scratch == NULL || r->scratch2 == NULL)
        abort();
}

static void run_free(struct run *r)
{
    mqtt_parser_free(&r->parser);
    free(r->scratch);
    free(r->scratch2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t versions[] = {0, MQTT_V311, MQTT_V5, MQTT_V5};
    struct run a, b;
    uint8_t flags, split;
    uint32_t max;

    if (size < 2)
        return 0;
    flags = data[0];
    split = data[1];
    data += 2;
    size -= 2;
    max = (flags & FLAG_SMALL) ? 64 : 1024 * 1024;

    /* A packet re-encoded is never longer than what came in plus header. */
    run_init(&a, versions[flags & 3], max, size + 16);
    run_init(&b, versions[flags & 3], max, size + 16);

    feed(&a, data, size);
    if (flags & FLAG_BYTES) {
        for (size_t i = 0; i < size; i++)
            if (!feed(&b, data + i, 1))
                break;
    } else {
        size_t cut = size > 0 ? split % (size + 1) : 0;

        if (feed(&b, data, cut))
            feed(&b, data + cut, size - cut);
    }
    if (a.hash != b.hash || a.events != b.events) {
        fprintf(stderr, "whole and split parses differ\n");
        abort();
    }
    mqtt_parser_trim(a.parser);
    run_free(&a);
    run_free(&b);
    return 0;
}
