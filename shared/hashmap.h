/*
 * A small hash map from byte-string keys to pointers, for tables that are
 * looked up on hot paths (the broker's route, session and interest tables).
 *
 * Open addressing with linear probing and backward-shift deletion, so there
 * are no tombstones and lookups stay short after many removals. Keys are
 * hashed with SipHash-1-3 under a random per-process key, because most keys
 * come from the network (addresses, topics) and a fixed hash would let a
 * peer pick colliding keys and turn every lookup into a scan.
 *
 * The map does not copy keys: the caller keeps each key's bytes alive, and
 * unchanged, while its entry is in the map. The usual pattern is that the
 * value is a struct that holds its own key. Values must not be NULL.
 */
#ifndef SB_HASHMAP_H
#define SB_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One slot; key == NULL marks an empty one. Private to hashmap.c. */
struct hashmap_slot {
    uint64_t hash;
    const void *key;
    size_t key_len;
    void *value;
};

/* Embed it in the owning struct; the fields are private. */
struct hashmap {
    struct hashmap_slot *slots;
    size_t mask; /* capacity - 1 (capacity is a power of two), or 0 when empty */
    size_t count;
};

/* An empty map; allocates nothing until the first put. */
void hashmap_init(struct hashmap *m);
/* Frees the slots (not the keys or values) and leaves an empty map. */
void hashmap_deinit(struct hashmap *m);

/* The value for the key, or NULL. */
void *hashmap_get(const struct hashmap *m, const void *key, size_t len);
/* Inserts the key, or replaces the key pointer and value of an equal key.
 * -1 when memory runs out (the map is unchanged). */
int hashmap_put(struct hashmap *m, const void *key, size_t len, void *value);
/* Removes the key; returns its value, or NULL when it was absent. */
void *hashmap_remove(struct hashmap *m, const void *key, size_t len);
size_t hashmap_count(const struct hashmap *m);

/* Iterates the entries in no particular order: set *pos to 0 first; returns
 * true with the next entry, false at the end. The map must not change
 * during the walk. key_r and len_r may be NULL. */
bool hashmap_next(const struct hashmap *m, size_t *pos, const void **key_r, size_t *len_r,
                  void **value_r);

/* The keyed hash the maps use (SipHash-1-3), for callers that want to hash
 * network-chosen data the same way. */
uint64_t hashmap_hash(const void *data, size_t len);

#endif
