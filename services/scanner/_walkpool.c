/* The threads of one native walk; _walkpool.h says how they share it. */
#define _GNU_SOURCE
#include "_walkpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IDLE_TICK_NS (10 * 1000 * 1000L) /* progress, cancel and throttle while waiting */
#define STALE_TICK_NS (1000 * 1000 * 1000L)

void totals_add(Totals *sum, const Totals *other) {
    sum->total += other->total;
    sum->disk += other->disk;
    sum->files += other->files;
    sum->dirs += other->dirs;
    sum->skipped += other->skipped;
    sum->entries += other->entries;
    if (other->largest > sum->largest) {
        sum->largest = other->largest;
    }
}

static long long nanoseconds_since(const struct timespec *then) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - then->tv_sec) * 1000000000LL + (now.tv_nsec - then->tv_nsec);
}

/* Lock held: one more thread walks. */
static void add_running(Shared *s) {
    if (++s->running > s->peak_running) {
        s->peak_running = s->running;
    }
}

static void update_hint(Shared *s) {
    const int taker = s->hungry > (int)s->nqueue || s->spawned < s->threads;
    __atomic_store_n(&s->wants_work, taker && s->running < s->allowed, __ATOMIC_RELAXED);
}

static void set_idle_tick(Shared *s) {
    clock_gettime(CLOCK_MONOTONIC, &s->ticked_at);
    s->idle_tick_at = s->ticked_at;
    s->idle_tick_at.tv_nsec += IDLE_TICK_NS;
    if (s->idle_tick_at.tv_nsec >= 1000000000L) {
        s->idle_tick_at.tv_nsec -= 1000000000L;
        s->idle_tick_at.tv_sec++;
    }
}

static int walker_init(Walker *w, Shared *s, int index, int flags) {
    memset(w, 0, sizeof *w);
    w->shared = s;
    w->index = index;
    w->flags = flags;
    w->cur_fd = -1;
    w->next_tick = s->tick_every;
    w->buffer = malloc(WALK_LIST_BUFFER_BYTES);
    if (w->buffer == NULL || inoset_init(&w->ancestors, 64) < 0 ||
        (s->keeps_tree && tree_init(&w->files, 0.0, 0, s->tree.top_max, 0) < 0)) {
        return -1;
    }
    return 0;
}

static void walker_release(Walker *w) {
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
    free(w->chain);
    free(w->buffer);
    inoset_release(&w->ancestors);
    tree_release(&w->files);
}

int walkpool_init(Shared *s, int threads, int allowed, int flags) {
    s->threads = threads < 1 ? 1 : (threads > WALK_MAX_THREADS ? WALK_MAX_THREADS : threads);
    s->allowed = allowed < 1 || allowed > s->threads ? s->threads : allowed;
    s->spawned = 1;
    s->running = 1;
    s->peak_running = 1;
    s->holding = 1;
    set_idle_tick(s);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&s->lock, NULL);
    s->walkers = calloc((size_t)s->threads, sizeof(Walker));
    if (s->walkers != NULL) {
        s->walkers[0].cur_fd = -1; /* released even if initialising it never happens */
    }
    if (s->walkers == NULL || inoset_init(&s->seen, 1024) < 0 ||
        walker_init(&s->walkers[0], s, 0, flags) < 0) {
        return -1;
    }
    s->walkers[0].holds_unit = 1;
    update_hint(s);
    return 0;
}

void walkpool_release(Shared *s) {
    if (s->walkers != NULL) {
        for (int i = 0; i < s->spawned; i++) {
            walker_release(&s->walkers[i]);
        }
        free(s->walkers);
    }
    for (size_t i = 0; i < s->nqueue; i++) {
        close(s->queue[i].fd);
        free(s->queue[i].chain);
    }
    free(s->queue);
    inoset_release(&s->seen);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
}

/* Thread 0, lock not held: the tick with everyone's totals. */
static int run_tick(Walker *w) {
    Shared *s = w->shared;
    Totals sum = w->t;
    pthread_mutex_lock(&s->lock);
    s->in_tick = 1;
    for (int i = 1; i < s->spawned; i++) {
        totals_add(&sum, &s->published[i]);
    }
    pthread_mutex_unlock(&s->lock);
    int allowed = 0;
    const int status = s->tick(s->tick_context, &sum, &allowed);
    pthread_mutex_lock(&s->lock);
    s->in_tick = 0;
    if (status < 0) {
        s->stop = 1;
    } else if (allowed > 0) {
        s->allowed = allowed > s->threads ? s->threads : allowed;
    } else {
        s->allowed = s->threads;
    }
    set_idle_tick(s);
    update_hint(s);
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return status;
}

/* Lock held: wait for a change; thread 0 ticks every IDLE_TICK_NS meanwhile. */
static int wait_turn(Walker *w) {
    Shared *s = w->shared;
    if (w->index != 0) {
        pthread_cond_wait(&s->changed, &s->lock);
        return 0;
    }
    if (pthread_cond_timedwait(&s->changed, &s->lock, &s->idle_tick_at) != ETIMEDOUT) {
        return 0;
    }
    pthread_mutex_unlock(&s->lock);
    const int status = run_tick(w);
    pthread_mutex_lock(&s->lock);
    return status;
}

/* Lock held: whether a helper must not walk now, whatever the count. */
static int helper_held(const Walker *w) {
    const Shared *s = w->shared;
    return w->index != 0 && (s->in_tick || nanoseconds_since(&s->ticked_at) > STALE_TICK_NS);
}

static int must_pause(const Walker *w) {
    return w->shared->running > w->shared->allowed || helper_held(w);
}

int walkpool_gate(Walker *w) {
    Shared *s = w->shared;
    if (w->index == 0 && run_tick(w) < 0) {
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    s->published[w->index] = w->t;
    int status = s->stop ? -1 : 0;
    if (status == 0 && must_pause(w)) {
        s->running--;
        update_hint(s);
        pthread_cond_broadcast(&s->changed);
        while (status == 0 && (s->running >= s->allowed || helper_held(w))) {
            status = s->stop ? -1 : wait_turn(w);
        }
        if (status == 0 && s->stop) {
            status = -1;
        }
        add_running(s);
        update_hint(s);
    }
    pthread_mutex_unlock(&s->lock);
    return status;
}

int walkpool_take(Walker *w) {
    Shared *s = w->shared;
    pthread_mutex_lock(&s->lock);
    if (w->holds_unit) {
        w->holds_unit = 0;
        s->holding--;
        s->running--;
        s->published[w->index] = w->t;
    }
    s->hungry++;
    update_hint(s);
    pthread_cond_broadcast(&s->changed);
    int got = 0;
    while (!s->stop) {
        if (s->nqueue > 0 && s->running < s->allowed) {
            const Donation unit = s->queue[--s->nqueue];
            free(w->chain);
            w->chain = unit.chain;
            w->chain_len = unit.chain_len;
            w->cur_fd = unit.fd;
            w->cur_ino = unit.ino;
            w->cur_record = unit.record;
            w->holds_unit = 1;
            s->holding++;
            add_running(s);
            got = 1;
            break;
        }
        if (s->nqueue == 0 && s->holding == 0) {
            break; /* every thread is hungry: the walk is over */
        }
        if (wait_turn(w) < 0) {
            break;
        }
    }
    s->hungry--;
    update_hint(s);
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return got;
}

static void *helper_main(void *argument) {
    Walker *w = argument;
    while (walkpool_take(w)) {
        const int status = w->shared->walk_unit(w, 0);
        if (status < 0) {
            walkpool_fail(w, status == -2);
            break;
        }
    }
    return NULL;
}

/* Lock held: start one more helper, with the donor's open flags; 0, or -1 if it could not
 * be (the walk goes on with the threads it has). */
static int spawn_helper(Shared *s, int flags) {
    Walker *helper = &s->walkers[s->spawned];
    if (walker_init(helper, s, s->spawned, flags) < 0) {
        walker_release(helper);
        s->threads = s->spawned; /* out of memory: no more tries */
        update_hint(s);
        return -1;
    }
    if (pthread_create(&helper->thread, NULL, helper_main, helper) != 0) {
        walker_release(helper);
        s->threads = s->spawned; /* no more tries */
        update_hint(s);
        return -1;
    }
    s->spawned++;
    update_hint(s);
    return 0;
}

int walkpool_should_donate(Walker *w) {
    Shared *s = w->shared;
    if (!__atomic_load_n(&s->wants_work, __ATOMIC_RELAXED)) {
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    int donate = 0;
    if (!s->stop && s->running < s->allowed) {
        donate = s->hungry > (int)s->nqueue ||
                 (s->spawned < s->threads && spawn_helper(s, w->flags) == 0);
    }
    pthread_mutex_unlock(&s->lock);
    return donate;
}

int walkpool_donate(Walker *w, int fd, uint64_t ino, uint32_t record, size_t top) {
    Shared *s = w->shared;
    const size_t length = w->chain_len + top + 1;
    uint64_t *chain = malloc(length * sizeof(uint64_t));
    if (chain == NULL) {
        close(fd);
        return -1;
    }
    if (w->chain_len > 0) { /* the root's unit has no chain (NULL) */
        memcpy(chain, w->chain, w->chain_len * sizeof(uint64_t));
    }
    for (size_t i = 0; i <= top; i++) {
        chain[w->chain_len + i] = w->stack[i].ino;
    }
    pthread_mutex_lock(&s->lock);
    if (grow_array((void **)&s->queue, &s->queue_cap, s->nqueue + 1, sizeof(Donation)) < 0) {
        pthread_mutex_unlock(&s->lock);
        close(fd);
        free(chain);
        return -1;
    }
    s->queue[s->nqueue++] = (Donation){fd, ino, record, chain, length};
    update_hint(s);
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void walkpool_fail(Walker *w, int out_of_memory) {
    Shared *s = w->shared;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    s->out_of_memory |= out_of_memory;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

void walkpool_join(Shared *s) {
    pthread_mutex_lock(&s->lock);
    const int spawned = s->spawned;
    pthread_mutex_unlock(&s->lock);
    for (int i = 1; i < spawned; i++) {
        pthread_join(s->walkers[i].thread, NULL);
    }
}
