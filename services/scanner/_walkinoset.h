/*
 * A set of inode numbers for the native walk (_walkc.c): open addressing, linear probing,
 * backward-shift delete. The walk keeps two: the ancestors of the directory being listed
 * (a same-filesystem bind mount of one of them is a cycle) and the multi-link files
 * already counted.
 */
#ifndef VOLUMEVIZ_WALKINOSET_H
#define VOLUMEVIZ_WALKINOSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *slots; /* 0 marks an empty slot; inode 0 is kept in has_zero */
    size_t mask;
    size_t used;
    int has_zero;
} InoSet;

/* `capacity` is a power of two; 0 on success, -1 when memory runs out. */
int inoset_init(InoSet *set, size_t capacity);
void inoset_release(InoSet *set);
/* Empty it, keeping its slots. */
void inoset_clear(InoSet *set);
int inoset_contains(const InoSet *set, uint64_t key);
/* Adds `key` (known to be absent); -1 when memory runs out. */
int inoset_add(InoSet *set, uint64_t key);
void inoset_discard(InoSet *set, uint64_t key);

#endif
