/* The inode sets of the native walk; see _walkinoset.h. */
#include "_walkinoset.h"

#include <stdlib.h>
#include <string.h>

static size_t ino_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key;
}

int inoset_init(InoSet *set, size_t capacity) {
    set->slots = calloc(capacity, sizeof(uint64_t));
    set->mask = capacity - 1;
    set->used = 0;
    set->has_zero = 0;
    return set->slots != NULL ? 0 : -1;
}

int inoset_contains(const InoSet *set, uint64_t key) {
    if (key == 0) {
        return set->has_zero;
    }
    for (size_t i = ino_hash(key) & set->mask;; i = (i + 1) & set->mask) {
        if (set->slots[i] == key) {
            return 1;
        }
        if (set->slots[i] == 0) {
            return 0;
        }
    }
}

static void inoset_place(uint64_t *slots, size_t mask, uint64_t key) {
    size_t i = ino_hash(key) & mask;
    while (slots[i] != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = key;
}

int inoset_add(InoSet *set, uint64_t key) {
    if (key == 0) {
        set->has_zero = 1;
        return 0;
    }
    if ((set->used + 1) * 2 > set->mask + 1) {
        size_t capacity = (set->mask + 1) * 2;
        uint64_t *grown = calloc(capacity, sizeof(uint64_t));
        if (grown == NULL) {
            return -1;
        }
        for (size_t i = 0; i <= set->mask; i++) {
            if (set->slots[i] != 0) {
                inoset_place(grown, capacity - 1, set->slots[i]);
            }
        }
        free(set->slots);
        set->slots = grown;
        set->mask = capacity - 1;
    }
    inoset_place(set->slots, set->mask, key);
    set->used++;
    return 0;
}

void inoset_discard(InoSet *set, uint64_t key) {
    if (key == 0) {
        set->has_zero = 0;
        return;
    }
    size_t i = ino_hash(key) & set->mask;
    while (set->slots[i] != key) {
        if (set->slots[i] == 0) {
            return;
        }
        i = (i + 1) & set->mask;
    }
    /* Backward shift: move later members of the probe run into the hole. */
    size_t hole = i;
    for (size_t j = (hole + 1) & set->mask; set->slots[j] != 0; j = (j + 1) & set->mask) {
        size_t home = ino_hash(set->slots[j]) & set->mask;
        if (((j - home) & set->mask) >= ((j - hole) & set->mask)) {
            set->slots[hole] = set->slots[j];
            hole = j;
        }
    }
    set->slots[hole] = 0;
    set->used--;
}

void inoset_release(InoSet *set) {
    free(set->slots);
    set->slots = NULL;
}

void inoset_clear(InoSet *set) {
    memset(set->slots, 0, (set->mask + 1) * sizeof(uint64_t));
    set->used = 0;
    set->has_zero = 0;
}
