/*
 * The hash map of hashmap.h: open addressing, linear probing, backward-shift
 * deletion, SipHash-1-3 keyed once per process from getrandom(2).
 */
#include "shared/hashmap.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define HASHMAP_MIN_CAPACITY 16

static uint64_t hashmap_k0, hashmap_k1;

/* Runs before main(), so the key is set before any map is used, without a
 * lock, even in threaded programs. */
__attribute__((constructor)) static void hashmap_seed(void)
{
    uint64_t k[2];

    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        /* Early boot without entropy: a weaker but still varying key. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
        k[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4fu ^ (uint64_t)(uintptr_t)&ts;
    }
    hashmap_k0 = k[0];
    hashmap_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint64_t hashmap_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    const uint8_t *end = p + (len & ~(size_t)7);
    uint64_t v0 = 0x736f6d6570736575u ^ hashmap_k0;
    uint64_t v1 = 0x646f72616e646f6du ^ hashmap_k1;
    uint64_t v2 = 0x6c7967656e657261u ^ hashmap_k0;
    uint64_t v3 = 0x7465646279746573u ^ hashmap_k1;
    uint64_t b = (uint64_t)len << 56;

    for (; p != end; p += 8) {
        uint64_t m;
        memcpy(&m, p, 8);
        m = le64toh(m);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    switch (len & 7) {
    case 7:
        b |= (uint64_t)p[6] << 48; /* fall through */
    case 6:
        b |= (uint64_t)p[5] << 40; /* fall through */
    case 5:
        b |= (uint64_t)p[4] << 32; /* fall through */
    case 4:
        b |= (uint64_t)p[3] << 24; /* fall through */
    case 3:
        b |= (uint64_t)p[2] << 16; /* fall through */
    case 2:
        b |= (uint64_t)p[1] << 8; /* fall through */
    case 1:
        b |= (uint64_t)p[0];
        break;
    case 0:
        break;
    }
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

void hashmap_init(struct hashmap *m)
{
    memset(m, 0, sizeof(*m));
}

void hashmap_deinit(struct hashmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

size_t hashmap_count(const struct hashmap *m)
{
    return m->count;
}

/* The slot holding the key, or the empty slot where it would go. */
static size_t slot_find(const struct hashmap *m, uint64_t hash, const void *key, size_t len)
{
    size_t i = hash & m->mask;

    for (;;) {
        const struct hashmap_slot *s = &m->slots[i];
        if (s->key == NULL)
            return i;
        if (s->hash == hash && s->key_len == len && (len == 0 || memcmp(s->key, key, len) == 0))
            return i;
        i = (i + 1) & m->mask;
    }
}

static int resize(struct hashmap *m, size_t capacity)
{
    struct hashmap_slot *old = m->slots;
    size_t old_cap = m->slots ? m->mask + 1 : 0;
    struct hashmap_slot *slots = calloc(capacity, sizeof(*slots));

    if (slots == NULL)
        return -1;
    m->slots = slots;
    m->mask = capacity - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key != NULL) {
            size_t j = old[i].hash & m->mask;
            while (slots[j].key != NULL)
                j = (j + 1) & m->mask;
            slots[j] = old[i];
        }
    }
    free(old);
    return 0;
}

void *hashmap_get(const struct hashmap *m, const void *key, size_t len)
{
    size_t i;

    if (m->count == 0)
        return NULL;
    i = slot_find(m, hashmap_hash(key, len), key, len);
    return m->slots[i].key != NULL ? m->slots[i].value : NULL;
}

int hashmap_put(struct hashmap *m, const void *key, size_t len, void *value)
{
    uint64_t hash = hashmap_hash(key, len);
    struct hashmap_slot *s;

    /* An empty key still needs a non-NULL pointer: NULL marks free slots. */
    if (key == NULL)
        key = "";
    /* Keep the load under 3/4 so that probe runs stay short. */
    if (m->slots == NULL || (m->count + 1) * 4 > (m->mask + 1) * 3) {
        size_t cap = m->slots ? (m->mask + 1) * 2 : HASHMAP_MIN_CAPACITY;
        if (resize(m, cap) < 0)
            return -1;
    }
    s = &m->slots[slot_find(m, hash, key, len)];
    if (s->key == NULL)
        m->count++;
    s->hash = hash;
    s->key = key;
    s->key_len = len;
    s->value = value;
    return 0;
}

void *hashmap_remove(struct hashmap *m, const void *key, size_t len)
{
    size_t i, j, cap;
    void *value;

    if (m->count == 0)
        return NULL;
    i = slot_find(m, hashmap_hash(key, len), key, len);
    if (m->slots[i].key == NULL)
        return NULL;
    value = m->slots[i].value;
    /* Backward shift: pull later members of the probe run into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    j = i;
    for (;;) {
        size_t home;

        j = (j + 1) & m->mask;
        if (m->slots[j].key == NULL)
            break;
        home = m->slots[j].hash & m->mask;
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        m->slots[i] = m->slots[j];
        i = j;
    }
    memset(&m->slots[i], 0, sizeof(m->slots[i]));
    m->count--;
    /* Give memory back after a mass removal (a peer with a million sessions
     * went away); the 1/8 threshold leaves room so that a map does not
     * shrink and grow on alternate calls. */
    cap = m->mask + 1;
    if (cap > HASHMAP_MIN_CAPACITY && m->count * 8 < cap) {
        if (m->count == 0) {
            hashmap_deinit(m);
        } else {
            /* Failure just keeps the larger table. */
            (void)resize(m, cap / 2);
        }
    }
    return value;
}

bool hashmap_next(const struct hashmap *m, size_t *pos, const void **key_r, size_t *len_r,
                  void **value_r)
{
    size_t cap = m->slots ? m->mask + 1 : 0;

    while (*pos < cap) {
        const struct hashmap_slot *s = &m->slots[(*pos)++];
        if (s->key != NULL) {
            if (key_r != NULL)
                *key_r = s->key;
            if (len_r != NULL)
                *len_r = s->key_len;
            *value_r = s->value;
            return true;
        }
    }
    return false;
}
