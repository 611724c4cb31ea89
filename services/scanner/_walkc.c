/*
 * The native walk's hot loop in C: services/scanner/walk_python.py `walk_fds`, statement
 * for statement, so both implementations keep one contract (walk.py's docstring states it).
 *
 *   walk(root_fd, flags, dev, root_ino, disk, on_tick, counters, tick_every, max_open_dirs,
 *        tree_options, threads)
 *     -> (total_size, disk_usage, file_count, directory_count, largest_file, skipped,
 *         entries, root_errno, tree, threads_used)
 *
 * With tree_options = (min_share, budget_bytes, top_files) it also keeps the directory tree
 * (_walktree.c: a 40-byte record and the name of every directory, the largest files) and
 * returns it pruned; with None, tree is None and the walk keeps nothing more.
 *
 * It takes ownership of root_fd (closed on every path, an exception included). Directories
 * are read with getdents64 into one buffer and every entry is fstatat'ed with
 * AT_SYMLINK_NOFOLLOW: the same system calls as `du`, without fts's bookkeeping. Only
 * directories are ever opened (openat with O_DIRECTORY|O_NOFOLLOW), each checked by fstat
 * against the (st_dev, st_ino) its lstat named. At most max_open_dirs ancestors stay open
 * (shared among the threads, at least one each); evicted ones are re-opened through ".."
 * and checked the same way. `on_tick(counters)` runs every tick_every entries with the
 * running totals set on `counters`; an exception it raises (or a signal handler's) closes
 * every descriptor and propagates. The walk runs on up to `threads` threads
 * (_walkpool.h), of which `counters.threads_allowed` (read before the walk and after every
 * tick; 0: all) walk at once; threads_used is the most that walked at once. Every
 * record's figures are folded into its parent's once all threads are done.
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

#include "_walkinoset.h"
#include "_walkpool.h"
#include "_walktree.h"

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* --- the Python half: thread 0's tick ------------------------------------------------- */

static PyObject *counter_names[7];
static PyObject *threads_allowed_name;
static const char *const counter_fields[7] = {
    "entries", "total_size", "disk_usage", "file_count",
    "directory_count", "largest_file", "skipped",
};

typedef struct {
    PyObject *on_tick, *counters;
    PyThreadState *saved; /* the walk runs without the GIL; a tick takes it back */
} PythonTick;

/* GIL held: counters.threads_allowed, or -1 with an exception set. */
static int read_allowed(PyObject *counters) {
    PyObject *value = PyObject_GetAttr(counters, threads_allowed_name);
    if (value == NULL) {
        return -1;
    }
    const long allowed = PyLong_AsLong(value);
    Py_DECREF(value);
    if (allowed == -1 && PyErr_Occurred()) {
        return -1;
    }
    return allowed < 0 ? 0 : (allowed > WALK_MAX_THREADS ? WALK_MAX_THREADS : (int)allowed);
}

/* GIL held: the totals onto `counters`, then on_tick. */
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

/* The WalkTick of _walkpool.h: a thread stuck in a hung filesystem's system call must not
 * stop the worker's bus thread, so the GIL is held only for as long as Python runs. */
static int python_tick(void *context, const Totals *sum, int *allowed) {
    PythonTick *python = context;
    PyEval_RestoreThread(python->saved);
    int status = 0;
    if (PyErr_CheckSignals() < 0) {
        status = -1;
    } else if (python->on_tick != Py_None) {
        status = call_tick(python->on_tick, python->counters, sum);
    }
    if (status == 0) {
        *allowed = read_allowed(python->counters);
        status = *allowed < 0 ? -1 : 0;
    }
    python->saved = PyEval_SaveThread();
    return status;
}

/* --- one unit: a directory and everything below it, on one thread ---------------------- */

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

static void pop_pending(Walker *w) {
    w->npending--;
    w->names_len = w->pending[w->npending].name_at;
}

/* Open the deepest frame's last pending subdirectory (popping it): its checked descriptor;
 * -1 when it is skipped (counted); -2 to try again (O_NOATIME was refused: dropped). */
static int open_pending(Walker *w, size_t top, Pending *taken) {
    const Pending next = w->pending[w->npending - 1];
    if (inoset_contains(&w->ancestors, next.ino)) {
        w->t.skipped++; /* a directory cycle (bind mount): never walk it twice */
        pop_pending(w);
        return -1;
    }
    int child = openat(w->stack[top].fd, w->names + next.name_at, w->flags);
    if (child < 0) {
        if (errno == EPERM && (w->flags & O_NOATIME)) {
            w->flags &= ~O_NOATIME; /* not our inode: read without O_NOATIME */
            return -2;
        }
        w->t.skipped++; /* unreadable, or swapped for a symlink (ELOOP) */
        pop_pending(w);
        return -1;
    }
    pop_pending(w);
    struct stat info;
    if (fstat(child, &info) != 0 || (uint64_t)info.st_ino != next.ino ||
        info.st_dev != w->shared->dev) {
        close(child);
        w->t.skipped++; /* replaced between lstat and open */
        return -1;
    }
    *taken = next;
    return child;
}

/* The listed directory's subdirectories become tree records (in listing order, as the
 * Python twin adds them) and its own files' figures go on its record; -1 out of memory. */
static int record_listing(Walker *w, size_t pending_from, uint64_t files, uint64_t apparent,
                          uint64_t disk) {
    Shared *s = w->shared;
    int status = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = pending_from; i < w->npending; i++) {
        const int64_t added =
            tree_add_dir(&s->tree, w->cur_record, w->names + w->pending[i].name_at,
                         w->pending[i].disk);
        if (added < 0) {
            status = -1;
            break;
        }
        w->pending[i].record = (uint32_t)added;
    }
    DirRecord *own = &s->tree.records[w->cur_record];
    own->files += files;
    own->apparent += apparent;
    own->disk += disk;
    pthread_mutex_unlock(&s->lock);
    return status;
}

/* Whether a multi-link inode is counted for the first time here; -1 out of memory. */
static int first_link(Shared *s, uint64_t ino) {
    pthread_mutex_lock(&s->lock);
    int first = !inoset_contains(&s->seen, ino);
    if (first && inoset_add(&s->seen, ino) < 0) {
        first = -1;
    }
    pthread_mutex_unlock(&s->lock);
    return first;
}

/* The WalkUnit of _walkpool.h: 0 done, -1 stopped, -2 out of memory. */
static int walk_unit(Walker *w, int is_root) {
    Shared *s = w->shared;
    const dev_t dev = s->dev;
    inoset_clear(&w->ancestors);
    for (size_t i = 0; i < w->chain_len; i++) {
        if (!inoset_contains(&w->ancestors, w->chain[i]) &&
            inoset_add(&w->ancestors, w->chain[i]) < 0) {
            return -2;
        }
    }
    size_t open_from = 0;
    for (;;) {
        const int fd = w->cur_fd;
        const size_t pending_from = w->npending;
        uint64_t own_files = 0, own_apparent = 0, own_disk = 0;
        /* List the directory: every entry is lstat'ed, subdirectories wait in `pending`. */
        for (;;) {
            long got = syscall(SYS_getdents64, fd, w->buffer, WALK_LIST_BUFFER_BYTES);
            if (got == 0) {
                break;
            }
            if (got < 0) {
                if (w->frames == 0 && is_root) {
                    s->root_errno = errno; /* the root cannot be listed: the caller's error */
                    return 0;
                }
                w->t.skipped++; /* listing failed part-way; what was read still counts */
                break;
            }
            for (long at = 0; at < got;) {
                const struct linux_dirent64 *entry = (const void *)(w->buffer + at);
                at += entry->d_reclen;
                const char *name = entry->d_name;
                if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
                    continue;
                }
                w->t.entries++;
                if (w->t.entries >= w->next_tick) {
                    w->next_tick = w->t.entries + s->tick_every;
                    if (walkpool_gate(w) < 0) {
                        return -1;
                    }
                }
                struct stat st;
                if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    w->t.skipped++; /* vanished, or the directory is not searchable */
                    continue;
                }
                if (st.st_dev != dev) {
                    continue; /* another filesystem: out of scope, like du -x */
                }
                const uint64_t blocks = (uint64_t)st.st_blocks * 512;
                if (S_ISDIR(st.st_mode)) {
                    w->t.dirs++;
                    w->t.disk += blocks;
                    size_t length = strlen(name) + 1;
                    if (grow_array((void **)&w->pending, &w->pending_cap, w->npending + 1,
                                   sizeof(Pending)) < 0 ||
                        grow_array((void **)&w->names, &w->names_cap, w->names_len + length,
                                   1) < 0) {
                        return -2;
                    }
                    memcpy(w->names + w->names_len, name, length);
                    w->pending[w->npending] = (Pending){(uint64_t)st.st_ino, blocks,
                                                        w->names_len, 0};
                    w->npending++;
                    w->names_len += length;
                    continue;
                }
                w->t.files++;
                own_files++; /* every path, as file_count; bytes once, below */
                if (st.st_nlink > 1) {
                    const int first = first_link(s, (uint64_t)st.st_ino);
                    if (first < 0) {
                        return -2;
                    }
                    if (!first) {
                        continue;
                    }
                }
                const unsigned long long size = (unsigned long long)st.st_size;
                w->t.total += size;
                w->t.disk += blocks;
                if (size > w->t.largest && S_ISREG(st.st_mode)) {
                    w->t.largest = size;
                }
                own_apparent += size;
                own_disk += blocks;
                if (s->keeps_tree && S_ISREG(st.st_mode)) {
                    tree_offer_file(&w->files, w->cur_record, name, size, blocks);
                }
            }
        }
        if (s->keeps_tree &&
            record_listing(w, pending_from, own_files, own_apparent, own_disk) < 0) {
            return -2;
        }

        /* Push the listed directory as a frame; evict the oldest open one past the limit. */
        if (grow_array((void **)&w->stack, &w->frames_cap, w->frames + 1, sizeof(Frame)) < 0 ||
            (!inoset_contains(&w->ancestors, w->cur_ino) &&
             inoset_add(&w->ancestors, w->cur_ino) < 0)) {
            return -2;
        }
        w->stack[w->frames] = (Frame){fd, w->cur_ino, pending_from, w->cur_record};
        w->frames++;
        w->cur_fd = -1;
        if (w->frames - open_from > s->max_open_dirs) {
            close(w->stack[open_from].fd);
            w->stack[open_from].fd = -1;
            open_from++;
        }

        /* Find the next directory to list: a pending child of the deepest frame (or one for
         * a hungry thread, while another stays ours), or climb. */
        while (w->frames > 0) {
            const size_t top = w->frames - 1;
            if (w->npending > w->stack[top].pending_from) {
                const int spare = w->npending > w->stack[top].pending_from + 1;
                Pending next;
                const int child = open_pending(w, top, &next);
                if (child < 0) {
                    continue;
                }
                if (spare && walkpool_should_donate(w)) {
                    if (walkpool_donate(w, child, next.ino, next.record, top) < 0) {
                        return -2;
                    }
                    continue;
                }
                w->cur_fd = child;
                w->cur_ino = next.ino;
                w->cur_record = next.record;
                break;
            }
            const int finished = w->stack[top].fd;
            w->frames--;
            inoset_discard(&w->ancestors, w->stack[top].ino);
            if (w->frames > 0 && w->stack[w->frames - 1].fd == -1) {
                int parent = reopen_parent(finished, w->flags, dev, w->stack[w->frames - 1].ino);
                if (parent == -1) {
                    /* The way back up is gone: what the ancestors still had is lost. */
                    w->t.skipped += w->npending;
                    w->npending = 0;
                    w->names_len = 0;
                    close(finished);
                    w->frames = 0; /* every remaining frame was evicted (fd -1) */
                    break;
                }
                w->stack[w->frames - 1].fd = parent;
                open_from--;
            }
            close(finished);
        }
        if (w->cur_fd == -1) {
            return 0;
        }
    }
}

/* --- the call ---------------------------------------------------------------------------- */

/* Every thread's totals, largest files and records into the result; NULL with an error. */
static PyObject *walk_result(Shared *s, PythonTick *python) {
    Totals t = {0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < s->spawned; i++) {
        totals_add(&t, &s->walkers[i].t);
    }
    PyObject *tree = NULL;
    if (s->keeps_tree && s->root_errno == 0) {
        for (int i = 0; i < s->spawned; i++) {
            const Tree *files = &s->walkers[i].files;
            for (size_t k = 0; k < files->ntop; k++) {
                const TopFile *file = &files->top[k];
                tree_offer_file(&s->tree, file->dir, file->name, file->size, file->disk);
            }
        }
        /* A child's record always comes after its parent's: fold from the last one. */
        for (size_t i = s->tree.count; i-- > 1;) {
            tree_fold(&s->tree, (uint32_t)i);
        }
        PyEval_RestoreThread(python->saved);
        tree = tree_result(&s->tree);
        if (tree == NULL) {
            return NULL;
        }
    } else {
        PyEval_RestoreThread(python->saved);
        tree = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(KKKKKKKiNi)", t.total, t.disk, t.files, t.dirs, t.largest,
                         t.skipped, t.entries, s->root_errno, tree, s->peak_running);
}

static PyObject *walk(PyObject *module, PyObject *args) {
    (void)module;
    int root_fd = -1, flags = 0; /* -1: not parsed, so nothing of the caller's is closed */
    unsigned long long dev_arg, root_ino, disk0;
    PyObject *on_tick, *counters, *tree_options;
    Py_ssize_t tick_every, max_open_dirs;
    int threads;
    if (!PyArg_ParseTuple(args, "iiKKKOOnnOi", &root_fd, &flags, &dev_arg, &root_ino, &disk0,
                          &on_tick, &counters, &tick_every, &max_open_dirs, &tree_options,
                          &threads)) {
        if (root_fd >= 0) {
            close(root_fd); /* ours from the call on, whatever happens */
        }
        return NULL;
    }
    if (tick_every < 1 || max_open_dirs < 1 || threads < 1) {
        close(root_fd);
        PyErr_SetString(PyExc_ValueError,
                        "tick_every, max_open_dirs and threads must be at least 1");
        return NULL;
    }
    const int allowed = read_allowed(counters);
    if (allowed < 0) {
        close(root_fd);
        return NULL;
    }
    Shared *s = calloc(1, sizeof(Shared));
    if (s == NULL) {
        close(root_fd);
        return PyErr_NoMemory();
    }
    s->dev = (dev_t)dev_arg;
    s->tick_every = (unsigned long long)tick_every;
    /* The bound on open descriptors is the walk's, not each thread's (a unit handed over
     * holds one more until it is taken: at most one per thread). */
    const int threads_at_most = threads > WALK_MAX_THREADS ? WALK_MAX_THREADS : threads;
    s->max_open_dirs = (size_t)max_open_dirs / (size_t)threads_at_most;
    if (s->max_open_dirs < 1) {
        s->max_open_dirs = 1;
    }
    s->walk_unit = walk_unit;
    PythonTick python = {on_tick, counters, NULL};
    s->tick = python_tick;
    s->tick_context = &python;
    double min_share = 0.0;
    Py_ssize_t budget_bytes = 0, top_files = 0;
    if (tree_options != Py_None) {
        if (!PyArg_ParseTuple(tree_options, "dnn", &min_share, &budget_bytes, &top_files) ||
            budget_bytes < 0 || top_files < 0) {
            close(root_fd);
            free(s);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "tree budget and top_files must be >= 0");
            }
            return NULL;
        }
        s->keeps_tree = 1;
    }
    /* The root's record exists with or without a tree: record_listing is skipped without
     * one, and a one-record tree costs nothing. */
    if (tree_init(&s->tree, min_share, (size_t)budget_bytes, (size_t)top_files, disk0) < 0) {
        close(root_fd);
        tree_release(&s->tree);
        free(s);
        return PyErr_NoMemory();
    }
    if (walkpool_init(s, threads, allowed, flags) < 0) {
        close(root_fd);
        walkpool_release(s);
        tree_release(&s->tree);
        free(s);
        return PyErr_NoMemory();
    }
    Walker *first = &s->walkers[0];
    first->cur_fd = root_fd;
    first->cur_ino = root_ino;
    first->cur_record = 0;
    first->t.disk = disk0;

    python.saved = PyEval_SaveThread(); /* taken back by each tick and at the end */
    int status = walk_unit(first, 1);
    while (status == 0 && walkpool_take(first)) {
        status = walk_unit(first, 0);
    }
    if (status < 0) {
        walkpool_fail(first, status == -2);
    }
    walkpool_join(s);
    PyObject *result = NULL;
    if (s->stop) {
        PyEval_RestoreThread(python.saved);
        if (s->out_of_memory && !PyErr_Occurred()) {
            PyErr_NoMemory();
        }
    } else {
        result = walk_result(s, &python); /* takes the GIL back */
    }
    walkpool_release(s);
    tree_release(&s->tree);
    free(s);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(root_fd, flags, dev, root_ino, disk, on_tick, counters, tick_every, "
     "max_open_dirs, tree_options, threads) -> (total_size, disk_usage, file_count, "
     "directory_count, largest_file, skipped, entries, root_errno, tree, threads_used); "
     "takes ownership "
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
    threads_allowed_name = PyUnicode_InternFromString("threads_allowed");
    if (threads_allowed_name == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
