/*
 * The native walk's hot loop in C: services/scanner/walk.py `_walk_fds`, statement for
 * statement, so both implementations keep one contract (walk.py's docstring states it).
 *
 *   walk(root_fd, flags, dev, root_ino, disk, on_tick, counters, tick_every, max_open_dirs,
 *        tree_options)
 *     -> (total_size, disk_usage, file_count, directory_count, largest_file, skipped,
 *         entries, root_errno, tree)
 *
 * With tree_options = (min_share, budget_bytes, top_files) it also keeps the directory tree
 * (_walktree.c: a 40-byte record and the name of every directory, the largest files) and
 * returns it pruned; with None, tree is None and the walk keeps nothing more.
 *
 * It takes ownership of root_fd (closed on every path, an exception included). Directories
 * are read with getdents64 into one buffer and every entry is fstatat'ed with
 * AT_SYMLINK_NOFOLLOW: the same system calls as `du`, without fts's bookkeeping. Only
 * directories are ever opened (openat with O_DIRECTORY|O_NOFOLLOW), each checked by fstat
 * against the (st_dev, st_ino) its lstat named. At most max_open_dirs ancestors stay open;
 * evicted ones are re-opened through ".." and checked the same way. `on_tick(counters)`
 * runs every tick_every entries with the running totals set on `counters`; an exception it
 * raises (or a signal handler's) closes every descriptor and propagates.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "_walktree.h"

#define LIST_BUFFER_BYTES (64 * 1024)

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* --- a set of inode numbers: open addressing, linear probing, backward-shift delete --- */

typedef struct {
    uint64_t *slots; /* 0 marks an empty slot; inode 0 is kept in has_zero */
    size_t mask;
    size_t used;
    int has_zero;
} InoSet;

static size_t ino_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key;
}

static int inoset_init(InoSet *set, size_t capacity) {
    set->slots = calloc(capacity, sizeof(uint64_t));
    set->mask = capacity - 1;
    set->used = 0;
    set->has_zero = 0;
    return set->slots != NULL ? 0 : -1;
}

static int inoset_contains(const InoSet *set, uint64_t key) {
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

/* Adds `key` (known to be absent); -1 when memory runs out. */
static int inoset_add(InoSet *set, uint64_t key) {
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

static void inoset_discard(InoSet *set, uint64_t key) {
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

typedef struct {
    uint64_t ino;
    size_t name_at; /* offset of the NUL-terminated name in the name arena */
    uint32_t record; /* its tree record (0 without a tree) */
} Pending;

typedef struct {
    int fd;              /* -1 once evicted (every frame below open_from) */
    uint64_t ino;        /* identifies the directory for the ".." check */
    size_t pending_from; /* its subdirectories still to visit are pending[pending_from:] */
    uint32_t record;     /* its tree record (0 without a tree) */
} Frame;

typedef struct {
    Frame *stack; /* the directories being walked, root first */
    size_t frames, frames_cap;
    /* subdirectories still to visit, deepest frame's last; their names in one arena */
    Pending *pending;
    size_t npending, pending_cap;
    char *names;
    size_t names_len, names_cap;
    InoSet ancestors; /* a same-filesystem bind mount of an ancestor is a cycle */
    InoSet seen;      /* multi-link non-directories already counted */
    char *buffer;
    int cur_fd;
    int keeps_tree;
    Tree tree;
} Walk;

static void walk_release(Walk *w) {
    if (w->cur_fd != -1) {
        close(w->cur_fd);
    }
    for (size_t i = 0; i < w->frames; i++) {
        if (w->stack[i].fd != -1) {
            close(w->stack[i].fd);
        }
    }
    free(w->stack);
    free(w->pending);
    free(w->names);
    free(w->ancestors.slots);
    free(w->seen.slots);
    free(w->buffer);
    tree_release(&w->tree);
}

/* The figures of a directory that will not be walked (or no further) go to its parent. */
static void fold(Walk *w, uint32_t record) {
    if (w->keeps_tree) {
        tree_fold(&w->tree, record);
    }
}

typedef struct {
    unsigned long long total, disk, files, dirs, largest, skipped, entries;
} Totals;

static PyObject *counter_names[7];
static const char *const counter_fields[7] = {
    "entries", "total_size", "disk_usage", "file_count",
    "directory_count", "largest_file", "skipped",
};

/* The Python half of a tick (GIL held): the totals onto `counters`, then on_tick. */
static int call_tick(PyObject *on_tick, PyObject *counters, const Totals *t) {
    unsigned long long values[7] = {
        t->entries, t->total, t->disk, t->files, t->dirs, t->largest, t->skipped,
    };
    for (int i = 0; i < 7; i++) {
        PyObject *value = PyLong_FromUnsignedLongLong(values[i]);
        if (value == NULL) {
            return -1;
        }
        int failed = PyObject_SetAttr(counters, counter_names[i], value);
        Py_DECREF(value);
        if (failed < 0) {
            return -1;
        }
    }
    PyObject *returned = PyObject_CallOneArg(on_tick, counters);
    if (returned == NULL) {
        return -1;
    }
    Py_DECREF(returned);
    return 0;
}

/* Set the running totals on `counters` and call on_tick; -1 with an exception set.
 * The walk runs without the GIL (a thread stuck in a hung filesystem's system call must
 * not stop the worker's bus thread); a tick takes it back for as long as Python runs. */
static int tick(PyObject *on_tick, PyObject *counters, const Totals *t, PyThreadState **saved) {
    PyEval_RestoreThread(*saved);
    int status = 0;
    if (PyErr_CheckSignals() < 0) {
        status = -1;
    } else if (on_tick != Py_None) {
        status = call_tick(on_tick, counters, t);
    }
    *saved = PyEval_SaveThread();
    return status;
}

/* Re-open an evicted ancestor through ".."; -1 unless it is still (dev, ino). */
static int reopen_parent(int child_fd, int flags, dev_t dev, uint64_t ino) {
    int parent = openat(child_fd, "..", flags);
    if (parent < 0) {
        return -1;
    }
    struct stat info;
    if (fstat(parent, &info) != 0 || info.st_dev != dev || (uint64_t)info.st_ino != ino) {
        close(parent);
        return -1;
    }
    return parent;
}

static PyObject *walk(PyObject *module, PyObject *args) {
    (void)module;
    int root_fd = -1, flags = 0; /* -1: not parsed, so nothing of the caller's is closed */
    unsigned long long dev_arg, root_ino, disk0;
    PyObject *on_tick, *counters, *tree_options;
    Py_ssize_t tick_every, max_open_dirs;
    if (!PyArg_ParseTuple(args, "iiKKKOOnnO", &root_fd, &flags, &dev_arg, &root_ino, &disk0,
                          &on_tick, &counters, &tick_every, &max_open_dirs, &tree_options)) {
        if (root_fd >= 0) {
            close(root_fd); /* ours from the call on, whatever happens */
        }
        return NULL;
    }
    if (tick_every < 1 || max_open_dirs < 1) {
        close(root_fd);
        PyErr_SetString(PyExc_ValueError, "tick_every and max_open_dirs must be at least 1");
        return NULL;
    }
    const dev_t dev = (dev_t)dev_arg;
    Walk w;
    memset(&w, 0, sizeof w);
    w.cur_fd = root_fd;
    Totals t = {0, disk0, 0, 0, 0, 0, 0};
    unsigned long long next_tick = (unsigned long long)tick_every;
    uint64_t cur_ino = root_ino;
    uint32_t cur_record = 0;
    size_t open_from = 0;
    int root_errno = 0;
    PyObject *tree_result_value = NULL;
    PyThreadState *saved = NULL;
    if (tree_options != Py_None) {
        double min_share;
        Py_ssize_t budget_bytes, top_files;
        if (!PyArg_ParseTuple(tree_options, "dnn", &min_share, &budget_bytes, &top_files) ||
            budget_bytes < 0 || top_files < 0) {
            close(root_fd);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "tree budget and top_files must be >= 0");
            }
            return NULL;
        }
        w.keeps_tree = 1;
        if (tree_init(&w.tree, min_share, (size_t)budget_bytes, (size_t)top_files, disk0) < 0) {
            goto out_of_memory;
        }
    }
    w.buffer = malloc(LIST_BUFFER_BYTES);
    if (w.buffer == NULL || inoset_init(&w.ancestors, 64) < 0 || inoset_init(&w.seen, 1024) < 0) {
        goto out_of_memory;
    }

    saved = PyEval_SaveThread(); /* taken back by each tick and at the end */
    for (;;) {
        const int fd = w.cur_fd;
        const size_t pending_from = w.npending;
        /* List the directory: every entry is lstat'ed, subdirectories wait in `pending`. */
        for (;;) {
            long got = syscall(SYS_getdents64, fd, w.buffer, LIST_BUFFER_BYTES);
            if (got == 0) {
                break;
            }
            if (got < 0) {
                if (w.frames == 0) {
                    root_errno = errno; /* the root cannot be listed: the caller's error */
                    goto walked;
                }
                t.skipped++; /* listing failed part-way; what was read still counts */
                break;
            }
            for (long at = 0; at < got;) {
                const struct linux_dirent64 *entry = (const void *)(w.buffer + at);
                at += entry->d_reclen;
                const char *name = entry->d_name;
                if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
                    continue;
                }
                t.entries++;
                if (t.entries >= next_tick) {
                    next_tick = t.entries + (unsigned long long)tick_every;
                    if (tick(on_tick, counters, &t, &saved) < 0) {
                        goto failed_unlocked;
                    }
                }
                struct stat st;
                if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    t.skipped++; /* vanished, or the directory is not searchable */
                    continue;
                }
                if (st.st_dev != dev) {
                    continue; /* another filesystem: out of scope, like du -x */
                }
                if (S_ISDIR(st.st_mode)) {
                    t.dirs++;
                    t.disk += (unsigned long long)st.st_blocks * 512;
                    uint32_t record = 0;
                    if (w.keeps_tree) {
                        int64_t added = tree_add_dir(&w.tree, cur_record, name,
                                                     (uint64_t)st.st_blocks * 512);
                        if (added < 0) {
                            goto oom_unlocked;
                        }
                        record = (uint32_t)added;
                    }
                    size_t length = strlen(name) + 1;
                    if (grow_array((void **)&w.pending, &w.pending_cap, w.npending + 1,
                             sizeof(Pending)) < 0 ||
                        grow_array((void **)&w.names, &w.names_cap, w.names_len + length, 1) < 0) {
                        goto oom_unlocked;
                    }
                    memcpy(w.names + w.names_len, name, length);
                    w.pending[w.npending].ino = (uint64_t)st.st_ino;
                    w.pending[w.npending].name_at = w.names_len;
                    w.pending[w.npending].record = record;
                    w.npending++;
                    w.names_len += length;
                    continue;
                }
                t.files++;
                DirRecord *own = w.keeps_tree ? &w.tree.records[cur_record] : NULL;
                if (own != NULL) {
                    own->files++; /* every path, as file_count; bytes once, below */
                }
                if (st.st_nlink > 1) {
                    if (inoset_contains(&w.seen, (uint64_t)st.st_ino)) {
                        continue;
                    }
                    if (inoset_add(&w.seen, (uint64_t)st.st_ino) < 0) {
                        goto oom_unlocked;
                    }
                }
                const unsigned long long size = (unsigned long long)st.st_size;
                t.total += size;
                t.disk += (unsigned long long)st.st_blocks * 512;
                if (size > t.largest && S_ISREG(st.st_mode)) {
                    t.largest = size;
                }
                if (own != NULL) {
                    own->apparent += size;
                    own->disk += (unsigned long long)st.st_blocks * 512;
                    if (S_ISREG(st.st_mode)) {
                        tree_offer_file(&w.tree, cur_record, name, size,
                                        (uint64_t)st.st_blocks * 512);
                    }
                }
            }
        }

        /* Push the listed directory as a frame; evict the oldest open one past the limit. */
        if (grow_array((void **)&w.stack, &w.frames_cap, w.frames + 1, sizeof(Frame)) < 0 ||
            inoset_add(&w.ancestors, cur_ino) < 0) {
            goto oom_unlocked;
        }
        w.stack[w.frames] = (Frame){fd, cur_ino, pending_from, cur_record};
        w.frames++;
        w.cur_fd = -1;
        if (w.frames - open_from > (size_t)max_open_dirs) {
            close(w.stack[open_from].fd);
            w.stack[open_from].fd = -1;
            open_from++;
        }

        /* Find the next directory to list: a pending child of the deepest frame, or climb. */
        while (w.frames > 0) {
            const size_t top = w.frames - 1;
            if (w.npending > w.stack[top].pending_from) {
                const Pending next = w.pending[w.npending - 1];
                const char *name = w.names + next.name_at;
                if (inoset_contains(&w.ancestors, next.ino)) {
                    t.skipped++; /* a directory cycle (bind mount): never walk it twice */
                    w.npending--;
                    w.names_len = next.name_at;
                    fold(&w, next.record);
                    continue;
                }
                int child = openat(w.stack[top].fd, name, flags);
                if (child < 0) {
                    if (errno == EPERM && (flags & O_NOATIME)) {
                        flags &= ~O_NOATIME; /* not our inode: read without O_NOATIME */
                    } else {
                        t.skipped++; /* unreadable, or swapped for a symlink (ELOOP) */
                        w.npending--;
                        w.names_len = next.name_at;
                        fold(&w, next.record);
                    }
                    continue;
                }
                w.npending--;
                w.names_len = next.name_at;
                struct stat info;
                if (fstat(child, &info) != 0 || (uint64_t)info.st_ino != next.ino ||
                    info.st_dev != dev) {
                    close(child);
                    t.skipped++; /* replaced between lstat and open */
                    fold(&w, next.record);
                    continue;
                }
                w.cur_fd = child;
                cur_ino = next.ino;
                cur_record = next.record;
                break;
            }
            const int finished = w.stack[top].fd;
            w.frames--;
            inoset_discard(&w.ancestors, w.stack[top].ino);
            fold(&w, w.stack[top].record);
            if (w.frames > 0 && w.stack[w.frames - 1].fd == -1) {
                int parent = reopen_parent(finished, flags, dev, w.stack[w.frames - 1].ino);
                if (parent == -1) {
                    /* The way back up is gone: what the ancestors still had is lost. */
                    t.skipped += w.npending;
                    for (size_t i = w.npending; i-- > 0;) {
                        fold(&w, w.pending[i].record);
                    }
                    for (size_t i = w.frames; i-- > 0;) {
                        fold(&w, w.stack[i].record);
                    }
                    close(finished);
                    w.frames = 0; /* every remaining frame was evicted (fd -1) */
                    break;
                }
                w.stack[w.frames - 1].fd = parent;
                open_from--;
            }
            close(finished);
        }
        if (w.cur_fd == -1) {
            break;
        }
    }

walked:
    PyEval_RestoreThread(saved);
    if (w.keeps_tree && root_errno == 0) {
        tree_result_value = tree_result(&w.tree);
        if (tree_result_value == NULL) {
            goto failed;
        }
    } else {
        tree_result_value = Py_NewRef(Py_None);
    }
    walk_release(&w);
    return Py_BuildValue("(KKKKKKKiN)", t.total, t.disk, t.files, t.dirs, t.largest, t.skipped,
                         t.entries, root_errno, tree_result_value);

failed_unlocked:
    PyEval_RestoreThread(saved);
    goto failed;
oom_unlocked:
    PyEval_RestoreThread(saved);
out_of_memory:
    PyErr_NoMemory();
failed:
    walk_release(&w);
    return NULL;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(root_fd, flags, dev, root_ino, disk, on_tick, counters, tick_every, "
     "max_open_dirs, tree_options) -> (total_size, disk_usage, file_count, "
     "directory_count, largest_file, skipped, entries, root_errno, tree); takes ownership "
     "of root_fd."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_walkc",
    .m_doc = "The native walk's hot loop (see walk.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__walkc(void) {
    for (int i = 0; i < 7; i++) {
        counter_names[i] = PyUnicode_InternFromString(counter_fields[i]);
        if (counter_names[i] == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module_def);
}
