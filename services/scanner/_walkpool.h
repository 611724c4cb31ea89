/*
 * The threads of one native walk (_walkc.c walks, this schedules): a volume's tree is
 * split over up to `threads` threads, of which at most `allowed` walk at once.
 *
 * Each thread walks a unit (a directory and everything below it) with the sequential loop
 * of _walkc.c. When another thread is hungry, a walker about to descend into one of two or
 * more pending subdirectories opens it (checked as always) and hands it over instead, with
 * the inodes of its ancestors, so a bind-mount cycle is still caught. Helper threads are
 * started lazily, on the first hand-over, so a small volume never starts one.
 *
 * Thread 0 is the caller's, the only one that runs Python: every tick_every of its entries,
 * and every IDLE_TICK_NS while it waits, it runs the tick with everyone's totals. The tick
 * can lower `allowed` (the scan's share of the CPUs, or 1 while the host is busy); a thread
 * over it pauses at its next tick, and while thread 0 is in the tick (a throttled tick
 * sleeps there) the helpers pause too, as they do once thread 0 has not ticked for
 * STALE_TICK_NS (stuck in a hung filesystem's system call, it could not see a cancel, so
 * the rest of the walk must not go on at full width without it). The walk is over when no thread holds a unit and
 * none is queued; an exception in a tick or a helper out of memory stops every thread.
 */
#ifndef VOLUMEVIZ_WALKPOOL_H
#define VOLUMEVIZ_WALKPOOL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "_walkinoset.h"
#include "_walktree.h"

#define WALK_MAX_THREADS 256
#define WALK_LIST_BUFFER_BYTES (64 * 1024) /* each walker's getdents64 buffer */

typedef struct {
    unsigned long long total, disk, files, dirs, largest, skipped, entries;
} Totals;

/* `other`'s figures into `sum` (the largest file is the larger of the two). */
void totals_add(Totals *sum, const Totals *other);

typedef struct {
    uint64_t ino;
    uint64_t disk;   /* its own blocks, for its tree record */
    size_t name_at;  /* offset of the NUL-terminated name in the name arena */
    uint32_t record; /* its tree record (0 without a tree) */
} Pending;

typedef struct {
    int fd;              /* -1 once evicted (every frame below open_from) */
    uint64_t ino;        /* identifies the directory for the ".." check */
    size_t pending_from; /* its subdirectories still to visit are pending[pending_from:] */
    uint32_t record;     /* its tree record (0 without a tree) */
} Frame;

/* A unit handed to a hungry thread: the directory open and checked, its ancestors' inodes. */
typedef struct {
    int fd;
    uint64_t ino;
    uint32_t record;
    uint64_t *chain;
    size_t chain_len;
} Donation;

typedef struct Shared Shared;

typedef struct {
    Shared *shared;
    int index; /* 0: the caller's thread */
    int flags; /* openat flags; O_NOATIME is dropped once refused */
    int holds_unit;
    /* the unit being walked */
    Frame *stack;
    size_t frames, frames_cap;
    Pending *pending; /* subdirectories still to visit, deepest frame's last */
    size_t npending, pending_cap;
    char *names;
    size_t names_len, names_cap;
    InoSet ancestors;
    uint64_t *chain; /* the unit root's ancestors (handed over with it) */
    size_t chain_len;
    char *buffer; /* getdents64 */
    int cur_fd;
    uint64_t cur_ino;
    uint32_t cur_record;
    Totals t;
    unsigned long long next_tick;
    Tree files; /* only its heap of largest files: merged into the shared tree at the end */
    pthread_t thread;
} Walker;

/* The unit walk (_walkc.c): 0 when w's unit is done, -1 when stopped, -2 out of memory. */
typedef int (*WalkUnit)(Walker *w, int is_root);
/* Thread 0's Python tick with everyone's totals; may set *allowed; -1 stops the walk. */
typedef int (*WalkTick)(void *context, const Totals *sum, int *allowed);

struct Shared {
    pthread_mutex_t lock; /* everything below, the tree and `seen` */
    pthread_cond_t changed;
    Donation *queue;
    size_t nqueue, queue_cap;
    int threads;  /* at most, thread 0 included */
    int spawned;  /* started so far, thread 0 included */
    int allowed;  /* may walk at once */
    int running;  /* walking now */
    int peak_running; /* the most that walked at once */
    int holding;  /* holding a unit (walking or paused) */
    int hungry;   /* waiting for a unit */
    int stop;     /* a tick raised, or a helper ran out of memory */
    int out_of_memory;
    int in_tick;  /* thread 0 is running Python */
    int wants_work; /* a hint read without the lock: a hand-over would be taken */
    int root_errno;
    struct timespec idle_tick_at; /* thread 0 ticks by then while it waits */
    struct timespec ticked_at;    /* thread 0's last tick: helpers pause once it is old */
    /* fixed for the walk */
    dev_t dev;
    int keeps_tree;
    unsigned long long tick_every;
    size_t max_open_dirs; /* per thread: the caller's bound shared among the threads */
    WalkUnit walk_unit;
    WalkTick tick;
    void *tick_context;
    Walker *walkers; /* `threads` of them; [0, spawned) initialised */
    Tree tree;
    InoSet seen; /* multi-link non-directories already counted */
    Totals published[WALK_MAX_THREADS]; /* each helper's totals at its last tick */
};

/* 0, or -1 when memory runs out; thread 0 is walkers[0], holding the root's unit. */
int walkpool_init(Shared *s, int threads, int allowed, int flags);
/* Every walker's descriptors and memory, the queue's; after walkpool_join. */
void walkpool_release(Shared *s);
/* Every tick_every entries: 0 to go on, -1 when the walk stops. */
int walkpool_gate(Walker *w);
/* Wait for a unit: 1 with it in w (cur_fd, chain), 0 when the walk is over or stopped. */
int walkpool_take(Walker *w);
/* Whether to hand over the next pending subdirectory (starting a helper if need be). */
int walkpool_should_donate(Walker *w);
/* Queue `fd` (open, checked), a child of frame `top`; -1 when memory runs out (fd closed). */
int walkpool_donate(Walker *w, int fd, uint64_t ino, uint32_t record, size_t top);
/* Stop every thread (a failed unit). */
void walkpool_fail(Walker *w, int out_of_memory);
/* Thread 0, at the end: wait for the helpers. */
void walkpool_join(Shared *s);

#endif
