/*
 * The directory tree a native walk keeps beside its totals (see tree.py for the rules):
 * one 40-byte record per directory plus its name, the largest files in a small heap, and
 * the pruning that turns them into what is stored. Used by _walkc.c only.
 */
#ifndef VOLUMEVIZ_WALKTREE_H
#define VOLUMEVIZ_WALKTREE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#define TREE_NO_PARENT UINT32_MAX
#define TREE_MAX_NAME 255

typedef struct {
    uint32_t parent;  /* record index, TREE_NO_PARENT for the root */
    uint32_t name_at; /* offset of its length-prefixed name in the name arena */
    uint32_t depth;   /* 0 for the root; reused as the kept id while pruning */
    uint32_t dirs;    /* directories below it: final once it is folded into its parent */
    uint64_t files, apparent, disk; /* its own at first, then cumulative */
} DirRecord;

typedef struct {
    uint64_t size, disk;
    uint32_t dir;
    unsigned char length;
    char name[TREE_MAX_NAME + 1];
} TopFile;

typedef struct {
    DirRecord *records;
    size_t count, capacity;
    unsigned char *names;
    size_t names_len, names_cap;
    TopFile *top; /* a min-heap on size of at most top_max entries */
    size_t ntop, top_max;
    double min_share;
    size_t budget_bytes;
} Tree;

/* Grow `*array` (of `item`-byte elements, `*capacity` of them) to hold `needed`, doubling;
 * -1 when memory runs out (the array is left as it was). Shared with _walkc.c. */
int grow_array(void **array, size_t *capacity, size_t needed, size_t item);

/* 0 on success; -1 when memory runs out. `tree` is zeroed first. */
int tree_init(Tree *tree, double min_share, size_t budget_bytes, size_t top_max,
              uint64_t root_disk);
void tree_release(Tree *tree);

/* A new directory record below `parent` holding its own blocks; its index, or -1. */
int64_t tree_add_dir(Tree *tree, uint32_t parent, const char *name, uint64_t disk);

/* Its figures are final: add them to its parent's. */
void tree_fold(Tree *tree, uint32_t index);

/* A regular file counted once: a candidate for the largest files. */
void tree_offer_file(Tree *tree, uint32_t dir, const char *name, uint64_t size, uint64_t disk);

/* (nodes, largest_files) as tree.py's RawTree expects it; NULL with an exception set. */
PyObject *tree_result(Tree *tree);

#endif
