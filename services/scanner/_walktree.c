/*
 * The directory tree of a native walk: records while walking, pruning afterwards.
 * tree.py states the rules and holds the pure-Python twin of every function here;
 * tests/test_tree_walk.py compares the two on the same trees.
 */
#include "_walktree.h"

#include <stdlib.h>
#include <string.h>

int grow_array(void **array, size_t *capacity, size_t needed, size_t item) {
    if (needed <= *capacity) {
        return 0;
    }
    size_t next = *capacity ? *capacity : 64;
    while (next < needed) {
        next *= 2;
    }
    void *bigger = realloc(*array, next * item);
    if (bigger == NULL) {
        return -1;
    }
    *array = bigger;
    *capacity = next;
    return 0;
}

int tree_init(Tree *tree, double min_share, size_t budget_bytes, size_t top_max,
              uint64_t root_disk) {
    memset(tree, 0, sizeof *tree);
    tree->min_share = min_share;
    tree->budget_bytes = budget_bytes;
    tree->top_max = top_max;
    tree->top = calloc(top_max ? top_max : 1, sizeof(TopFile));
    if (tree->top == NULL) {
        return -1;
    }
    if (tree_add_dir(tree, TREE_NO_PARENT, "", root_disk) < 0) {
        return -1;
    }
    return 0;
}

void tree_release(Tree *tree) {
    free(tree->records);
    free(tree->names);
    free(tree->top);
    memset(tree, 0, sizeof *tree);
}

int64_t tree_add_dir(Tree *tree, uint32_t parent, const char *name, uint64_t disk) {
    size_t length = strlen(name);
    if (length > TREE_MAX_NAME) {
        length = TREE_MAX_NAME; /* Linux names are at most 255 bytes; never more here */
    }
    if (tree->count >= TREE_NO_PARENT || tree->names_len + length + 1 > UINT32_MAX ||
        grow_array((void **)&tree->records, &tree->capacity, tree->count + 1, sizeof(DirRecord)) <
            0 ||
        grow_array((void **)&tree->names, &tree->names_cap, tree->names_len + length + 1, 1) < 0) {
        return -1;
    }
    DirRecord *record = &tree->records[tree->count];
    record->parent = parent;
    record->name_at = (uint32_t)tree->names_len;
    record->depth = parent == TREE_NO_PARENT ? 0 : tree->records[parent].depth + 1;
    record->dirs = 0;
    record->files = 0;
    record->apparent = 0;
    record->disk = disk;
    tree->names[tree->names_len] = (unsigned char)length;
    memcpy(tree->names + tree->names_len + 1, name, length);
    tree->names_len += length + 1;
    return (int64_t)tree->count++;
}

void tree_fold(Tree *tree, uint32_t index) {
    const DirRecord *child = &tree->records[index];
    if (child->parent == TREE_NO_PARENT) {
        return;
    }
    DirRecord *parent = &tree->records[child->parent];
    parent->dirs += 1 + child->dirs;
    parent->files += child->files;
    parent->apparent += child->apparent;
    parent->disk += child->disk;
}

/* --- the largest files: a min-heap on size, ties broken so C and Python agree --------- */

static int top_less(const TopFile *a, const TopFile *b) {
    /* "a is a worse candidate than b": smaller; as large but in a directory met later;
     * in the same directory, the greater name (tree.py's TreeRecorder orders the same). */
    if (a->size != b->size) {
        return a->size < b->size;
    }
    if (a->dir != b->dir) {
        return a->dir > b->dir;
    }
    size_t shorter = a->length < b->length ? a->length : b->length;
    int order = memcmp(a->name, b->name, shorter);
    return order != 0 ? order > 0 : a->length > b->length;
}

static void top_sift_down(TopFile *heap, size_t n, size_t i) {
    for (;;) {
        size_t smallest = i, left = 2 * i + 1, right = left + 1;
        if (left < n && top_less(&heap[left], &heap[smallest])) {
            smallest = left;
        }
        if (right < n && top_less(&heap[right], &heap[smallest])) {
            smallest = right;
        }
        if (smallest == i) {
            return;
        }
        TopFile swap = heap[i];
        heap[i] = heap[smallest];
        heap[smallest] = swap;
        i = smallest;
    }
}

void tree_offer_file(Tree *tree, uint32_t dir, const char *name, uint64_t size, uint64_t disk) {
    if (tree->top_max == 0) {
        return;
    }
    if (tree->ntop == tree->top_max && size < tree->top[0].size) {
        return; /* smaller than the smallest kept: the cheap, common case */
    }
    TopFile candidate;
    candidate.size = size;
    candidate.disk = disk;
    candidate.dir = dir;
    size_t length = strlen(name);
    if (length > TREE_MAX_NAME) {
        length = TREE_MAX_NAME;
    }
    candidate.length = (unsigned char)length;
    memcpy(candidate.name, name, length);
    candidate.name[length] = '\0';
    if (tree->ntop == tree->top_max && !top_less(&tree->top[0], &candidate)) {
        return;
    }
    if (tree->ntop < tree->top_max) {
        size_t i = tree->ntop++;
        tree->top[i] = candidate;
        while (i > 0) { /* sift up */
            size_t parent = (i - 1) / 2;
            if (!top_less(&tree->top[i], &tree->top[parent])) {
                break;
            }
            TopFile swap = tree->top[i];
            tree->top[i] = tree->top[parent];
            tree->top[parent] = swap;
            i = parent;
        }
        return;
    }
    tree->top[0] = candidate;
    top_sift_down(tree->top, tree->ntop, 0);
}

/* --- pruning ---------------------------------------------------------------------------- */

static const DirRecord *sort_records; /* qsort has no context argument */

/* The order nodes are kept in: the first two levels, then by disk usage (largest first),
 * shallower first, discovery order last. An ancestor always sorts before its descendants
 * (its disk usage is at least theirs, its depth smaller), so every prefix is a tree. */
static int keep_order(const void *left, const void *right) {
    const uint32_t a = *(const uint32_t *)left, b = *(const uint32_t *)right;
    const DirRecord *ra = &sort_records[a], *rb = &sort_records[b];
    const int ga = ra->depth > 2, gb = rb->depth > 2;
    if (ga != gb) {
        return ga - gb;
    }
    if (ra->disk != rb->disk) {
        return ra->disk > rb->disk ? -1 : 1;
    }
    if (ra->depth != rb->depth) {
        return ra->depth < rb->depth ? -1 : 1;
    }
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* What a name costs in the stored JSON at most: a byte can become "\u00XX" (control
 * characters) or "%XX" (tree.py's NAME_BYTE_COST); the figures and keys of a node add
 * NODE_COST, those of a largest file FILE_COST. */
#define NAME_BYTE_COST 6
#define NODE_COST 320
#define FILE_COST 100

static size_t node_cost(const Tree *tree, uint32_t index) {
    return NAME_BYTE_COST * (size_t)tree->names[tree->records[index].name_at] + NODE_COST;
}

static size_t file_path_length(const Tree *tree, const TopFile *file) {
    size_t length = 1 + file->length;
    for (uint32_t at = file->dir; tree->records[at].parent != TREE_NO_PARENT;
         at = tree->records[at].parent) {
        length += 1 + tree->names[tree->records[at].name_at];
    }
    return length;
}

/* Best first: the order tree_offer_file ranks candidates in. */
static int top_best_first(const void *left, const void *right) {
    const TopFile *a = left, *b = right;
    return top_less(b, a) ? -1 : (top_less(a, b) ? 1 : 0);
}

static PyObject *name_bytes(const Tree *tree, uint32_t index) {
    const unsigned char *at = tree->names + tree->records[index].name_at;
    return PyBytes_FromStringAndSize((const char *)at + 1, at[0]);
}

/* The path of a file below the root: "/a/b/name", as bytes. */
static PyObject *file_path(const Tree *tree, const TopFile *file) {
    const size_t length = file_path_length(tree, file);
    PyObject *path = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
    if (path == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(path);
    size_t end = length - file->length;
    memcpy(out + end, file->name, file->length);
    out[--end] = '/';
    for (uint32_t at = file->dir; tree->records[at].parent != TREE_NO_PARENT;
         at = tree->records[at].parent) {
        const unsigned char *name = tree->names + tree->records[at].name_at;
        end -= name[0];
        memcpy(out + end, name + 1, name[0]);
        out[--end] = '/';
    }
    return path;
}

typedef struct {
    uint64_t files, apparent, disk, dirs;
} Sums;

PyObject *tree_result(Tree *tree) {
    const size_t n = tree->count;
    const uint64_t total_disk = tree->records[0].disk;
    const double threshold = tree->min_share * (double)total_disk;
    uint32_t *order = malloc((n ? n : 1) * sizeof(uint32_t));
    if (order == NULL) {
        return PyErr_NoMemory();
    }
    size_t candidates = 0;
    for (size_t i = 0; i < n; i++) {
        if (tree->records[i].depth <= 2 || (double)tree->records[i].disk >= threshold) {
            order[candidates++] = (uint32_t)i;
        }
    }
    sort_records = tree->records;
    qsort(order, candidates, sizeof(uint32_t), keep_order);
    /* The largest files first, best first, with at most half the budget (their paths can
     * be long: 10,000 levels deep); the nodes take the rest. */
    qsort(tree->top, tree->ntop, sizeof(TopFile), top_best_first);
    size_t files_kept = 0, spent = 0;
    while (files_kept < tree->ntop) {
        size_t cost = NAME_BYTE_COST * file_path_length(tree, &tree->top[files_kept]) + FILE_COST;
        if (spent + cost > tree->budget_bytes / 2) {
            break;
        }
        spent += cost;
        files_kept++;
    }
    size_t kept = 0;
    while (kept < candidates) {
        size_t cost = node_cost(tree, order[kept]);
        if (kept > 0 && spent + cost > tree->budget_bytes) {
            break; /* a prefix of the order: still a tree */
        }
        spent += cost;
        kept++;
    }
    /* Depths of the kept nodes, then `depth` becomes "kept id + 1" (0: not kept). */
    uint32_t *depths = malloc((kept ? kept : 1) * sizeof(uint32_t));
    Sums *all_children = calloc(kept ? kept : 1, sizeof(Sums));
    Sums *kept_children = calloc(kept ? kept : 1, sizeof(Sums));
    PyObject *nodes = NULL, *largest = NULL, *result = NULL;
    if (depths == NULL || all_children == NULL || kept_children == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (size_t k = 0; k < kept; k++) {
        depths[k] = tree->records[order[k]].depth;
    }
    for (size_t i = 0; i < n; i++) {
        tree->records[i].depth = 0;
    }
    for (size_t k = 0; k < kept; k++) {
        tree->records[order[k]].depth = (uint32_t)k + 1;
    }
    for (size_t i = 1; i < n; i++) {
        const DirRecord *record = &tree->records[i];
        const uint32_t parent_id = tree->records[record->parent].depth;
        if (parent_id == 0) {
            continue;
        }
        Sums *sums = record->depth ? &kept_children[parent_id - 1] : &all_children[parent_id - 1];
        sums->files += record->files;
        sums->apparent += record->apparent;
        sums->disk += record->disk;
        sums->dirs += 1 + record->dirs;
    }
    nodes = PyList_New((Py_ssize_t)kept);
    if (nodes == NULL) {
        goto out;
    }
    for (size_t k = 0; k < kept; k++) {
        const DirRecord *record = &tree->records[order[k]];
        const Sums *pruned = &all_children[k], *shown = &kept_children[k];
        const long long parent =
            record->parent == TREE_NO_PARENT ? -1 : (long long)tree->records[record->parent].depth - 1;
        PyObject *name = name_bytes(tree, order[k]);
        if (name == NULL) {
            goto out;
        }
        /* own = cumulative - every child; other = the children that were not kept */
        PyObject *node = Py_BuildValue(
            "(NLKKKKKKKKKKKK)", name, parent, (unsigned long long)depths[k],
            (unsigned long long)record->apparent, (unsigned long long)record->disk,
            (unsigned long long)record->files, (unsigned long long)record->dirs,
            (unsigned long long)(record->apparent - pruned->apparent - shown->apparent),
            (unsigned long long)(record->disk - pruned->disk - shown->disk),
            (unsigned long long)(record->files - pruned->files - shown->files),
            (unsigned long long)pruned->apparent, (unsigned long long)pruned->disk,
            (unsigned long long)pruned->files, (unsigned long long)pruned->dirs);
        if (node == NULL) {
            goto out;
        }
        PyList_SET_ITEM(nodes, (Py_ssize_t)k, node);
    }
    largest = PyList_New((Py_ssize_t)files_kept);
    if (largest == NULL) {
        goto out;
    }
    for (size_t i = 0; i < files_kept; i++) {
        const TopFile *file = &tree->top[i];
        PyObject *path = file_path(tree, file);
        if (path == NULL) {
            goto out;
        }
        PyObject *item = Py_BuildValue("(NKK)", path, (unsigned long long)file->size,
                                       (unsigned long long)file->disk);
        if (item == NULL) {
            goto out;
        }
        PyList_SET_ITEM(largest, (Py_ssize_t)i, item);
    }
    result = PyTuple_Pack(2, nodes, largest);
out:
    Py_XDECREF(nodes);
    Py_XDECREF(largest);
    free(order);
    free(depths);
    free(all_children);
    free(kept_children);
    return result;
}
