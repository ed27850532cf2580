/* Linked-structure workloads over an ap_pool, timed as whole C loops.
 *
 * W1 queue with random cancellations: build n nodes in order, free a random fraction,
 *    append as many at the tail, traverse.                       (rounds = 1)
 * W4 steady-state churn: W1's free/append step repeated `rounds` times, traversal
 *    measured after each round.
 * W2 random insert-after / delete in a list (hint: the predecessor), traverse.
 * W3 treap churn with random keys (hint: the parent), in-order traversal.
 *
 * Every node is 32 bytes; the pool's stride (obj_size) may be larger (48) so that the
 * density of glibc's 48-byte chunks can be separated from placement.  Addresses of the
 * final structure in traversal order are written to res->addrs (and, for W4, after every
 * round to res->round_addrs) so locality can be computed outside the timed code. */
#ifndef ALLOC_WORKLOADS_H
#define ALLOC_WORKLOADS_H

#include <malloc.h>
#include <math.h>
#include <sys/mman.h>
#include <time.h>
#include "alloc_pool.h"

typedef struct wl_node {
    struct wl_node *next, *prev;
    uint64_t key, val;
} wl_node;

typedef struct tr_node {
    struct tr_node *left, *right;
    uint64_t key, prio;
} tr_node;

typedef struct wl_params {
    int workload;   /* 1..4 */
    size_t n;       /* initial nodes */
    double frac;    /* W1/W4: fraction cancelled per round */
    int rounds;     /* W4 rounds (W1 uses 1) */
    int repeats;    /* traversals timed per measurement */
    size_t n_ops;   /* W2: insert/delete ops; W3: delete+insert pairs */
    uint64_t seed;
    int use_hint;
    size_t evict_bytes; /* > 0: evict the caches (wl_evict) before every timed walk */
} wl_params;

typedef struct wl_result {
    double *trav_ns;       /* [rounds * repeats] ns per node, caller-allocated */
    uint64_t *addrs;       /* [addr_cap] final structure in traversal order */
    size_t addr_cap;
    uint64_t *round_addrs; /* optional, W4: [rounds * n] */
    size_t n_nodes;        /* nodes in the final structure */
    double build_ns;       /* per node: allocation + linking while building */
    double alloc_ns;       /* per op, tight allocation loop after churn (W1/W4) */
    double free_ns;        /* per op, tight free loop (W1/W4) */
    double churn_ns;       /* per alloc-or-free op over the whole churn phase */
    size_t usable_bytes;   /* system kind: sum of malloc_usable_size over live nodes */
    int status;
} wl_result;

static volatile uint64_t wl_sink; /* keeps traversals from being optimised away */

static inline double wl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Cache eviction before a timed walk: read-modify-write one word per 64-byte line of a
 * private buffer of `bytes` (callers pass a multiple of the last-level cache), so the
 * walk that follows finds none of its data in any cache level and pays memory's cost.
 * The buffer is mmap'd once per process (never from the allocator under test, so no
 * heap is disturbed) and grown when a larger size is asked for; its first touch (page
 * faults) happens here, outside every timed region.  Returns 0, or -1 when the buffer
 * cannot be mapped (then nothing is evicted and the caller reports the failure). */
static unsigned char *wl_evict_buf;
static size_t wl_evict_len;

static int wl_evict(size_t bytes)
{
    if (!bytes) return 0;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes > wl_evict_len) {
        if (wl_evict_buf) munmap(wl_evict_buf, wl_evict_len);
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            wl_evict_buf = NULL;
            wl_evict_len = 0;
            return -1;
        }
        wl_evict_buf = (unsigned char *)m;
        wl_evict_len = bytes;
    }
    volatile uint64_t *w = (volatile uint64_t *)wl_evict_buf;
    for (size_t i = 0, lines = bytes / 64; i < lines; ++i) w[i * 8] += 1;
    return 0;
}

/* splitmix64: small, fast, and a bijection of its state, so keys drawn from a counter
 * are distinct. */
static inline uint64_t wl_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t wl_rand(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return wl_mix(*s);
}

static inline size_t wl_below(uint64_t *s, size_t n) /* uniform in [0, n) */
{
    return (size_t)(((__uint128_t)wl_rand(s) * n) >> 64);
}

/* ---- lists (W1, W2, W4) ------------------------------------------------------------- */

static double wl_traverse_list(const wl_node *head, size_t n)
{
    uint64_t sum = 0;
    double t0 = wl_now();
    for (const wl_node *x = head; x; x = x->next) sum += x->key;
    double t1 = wl_now();
    wl_sink += sum;
    return n ? (t1 - t0) / (double)n : NAN;
}

static size_t wl_collect_list(const wl_node *head, uint64_t *out, size_t cap)
{
    size_t i = 0;
    for (const wl_node *x = head; x && i < cap; x = x->next) out[i++] = (uint64_t)(uintptr_t)x;
    return i;
}

static inline void wl_unlink(wl_node **head, wl_node **tail, wl_node *x)
{
    if (x->prev) x->prev->next = x->next; else *head = x->next;
    if (x->next) x->next->prev = x->prev; else *tail = x->prev;
}

static inline void wl_append(wl_node **head, wl_node **tail, wl_node *x, uint64_t key)
{
    x->next = NULL;
    x->prev = *tail;
    x->key = key;
    x->val = key;
    if (*tail) (*tail)->next = x; else *head = x;
    *tail = x;
}

static void wl_measure_list(const wl_params *q, wl_result *r, const wl_node *head, size_t n,
                            int round)
{
    for (int k = 0; k < q->repeats; ++k) {
        if (wl_evict(q->evict_bytes)) r->status = AP_NOMEM;
        r->trav_ns[(size_t)round * q->repeats + k] = wl_traverse_list(head, n);
    }
}

static size_t wl_usable(const ap_pool *p, const uint64_t *a, size_t n)
{
    size_t s = 0;
    if (p->kind == AP_SYSTEM)
        for (size_t i = 0; i < n; ++i) s += malloc_usable_size((void *)(uintptr_t)a[i]);
    return s;
}

static void wl_finish(ap_pool *p, wl_result *r, size_t n_nodes)
{
    r->n_nodes = n_nodes;
    r->usable_bytes = wl_usable(p, r->addrs, n_nodes);
    for (size_t i = 0; i < n_nodes; ++i) ap_free(p, (void *)(uintptr_t)r->addrs[i]);
}

/* Build n nodes in order; arr receives them.  Returns head, or NULL on exhaustion. */
static int wl_build_list(ap_pool *p, const wl_params *q, wl_result *r, wl_node **arr,
                         wl_node **head, wl_node **tail)
{
    *head = *tail = NULL;
    double t0 = wl_now();
    for (size_t i = 0; i < q->n; ++i) {
        wl_node *x = (wl_node *)ap_alloc(p, q->use_hint ? *tail : NULL);
        if (!x) return AP_NOMEM;
        wl_append(head, tail, x, i);
        arr[i] = x;
    }
    r->build_ns = q->n ? (wl_now() - t0) / (double)q->n : NAN;
    return AP_OK;
}

static void wl_free_all_list(ap_pool *p, wl_node *head)
{
    while (head) {
        wl_node *nx = head->next;
        ap_free(p, head);
        head = nx;
    }
}

/* W1 (rounds == 1) and W4. */
static int wl_queue(ap_pool *p, const wl_params *q, wl_result *r)
{
    size_t n = q->n, k = (size_t)(q->frac * (double)n + 0.5);
    if (k > n) k = n;
    wl_node **arr = (wl_node **)malloc((n ? n : 1) * sizeof *arr);
    if (!arr) return AP_NOMEM;
    wl_node *head, *tail;
    if (wl_build_list(p, q, r, arr, &head, &tail) != AP_OK) {
        wl_free_all_list(p, head);
        free(arr);
        return AP_NOMEM;
    }
    uint64_t rng = q->seed, key = n;
    double t_alloc = 0, t_free = 0, t_churn = 0;
    int rounds = q->rounds < 1 ? 1 : q->rounds;
    for (int round = 0; round < rounds; ++round) {
        /* partial Fisher-Yates: arr[0..k) becomes a random subset in random order */
        for (size_t j = 0; j < k; ++j) {
            size_t o = j + wl_below(&rng, n - j);
            wl_node *t = arr[j]; arr[j] = arr[o]; arr[o] = t;
        }
        double t0 = wl_now();
        for (size_t j = 0; j < k; ++j) wl_unlink(&head, &tail, arr[j]);
        double t1 = wl_now();
        for (size_t j = 0; j < k; ++j) ap_free(p, arr[j]);
        double t2 = wl_now();
        const void *hint = tail;
        for (size_t j = 0; j < k; ++j) {
            wl_node *x = (wl_node *)ap_alloc(p, q->use_hint ? hint : NULL);
            if (!x) { /* cannot happen after k frees, but never corrupt */
                for (size_t i = 0; i < j; ++i) ap_free(p, arr[i]);
                wl_free_all_list(p, head);
                free(arr);
                return AP_NOMEM;
            }
            arr[j] = x;
            hint = x;
        }
        double t3 = wl_now();
        for (size_t j = 0; j < k; ++j) wl_append(&head, &tail, arr[j], key++);
        double t4 = wl_now();
        t_free += t2 - t1;
        t_alloc += t3 - t2;
        t_churn += t4 - t0;
        wl_measure_list(q, r, head, n, round);
        if (r->round_addrs) wl_collect_list(head, r->round_addrs + (size_t)round * n, n);
    }
    double ops = (double)k * rounds;
    r->alloc_ns = ops ? t_alloc / ops : NAN;
    r->free_ns = ops ? t_free / ops : NAN;
    r->churn_ns = ops ? t_churn / (2 * ops) : NAN;
    size_t got = wl_collect_list(head, r->addrs, r->addr_cap);
    wl_finish(p, r, got);
    free(arr);
    return AP_OK;
}

/* W2: each op inserts after a random node (hint: that node) or deletes a random node. */
static int wl_list_churn(ap_pool *p, const wl_params *q, wl_result *r)
{
    size_t cap = q->n + q->n_ops, cnt = q->n;
    wl_node **live = (wl_node **)malloc((cap ? cap : 1) * sizeof *live);
    if (!live) return AP_NOMEM;
    wl_node *head, *tail;
    if (wl_build_list(p, q, r, live, &head, &tail) != AP_OK) {
        wl_free_all_list(p, head);
        free(live);
        return AP_NOMEM;
    }
    uint64_t rng = q->seed, key = q->n;
    double t0 = wl_now();
    for (size_t o = 0; o < q->n_ops; ++o) {
        uint64_t coin = wl_rand(&rng);
        if ((coin & 1) || cnt < 2) {
            wl_node *at = cnt ? live[wl_below(&rng, cnt)] : NULL;
            wl_node *x = (wl_node *)ap_alloc(p, q->use_hint ? at : NULL);
            if (!x) {
                wl_free_all_list(p, head);
                free(live);
                return AP_NOMEM;
            }
            x->key = x->val = key++;
            if (!at) {
                x->prev = x->next = NULL;
                head = tail = x;
            } else {
                x->prev = at;
                x->next = at->next;
                if (at->next) at->next->prev = x; else tail = x;
                at->next = x;
            }
            live[cnt++] = x;
        } else {
            size_t j = wl_below(&rng, cnt);
            wl_node *x = live[j];
            wl_unlink(&head, &tail, x);
            ap_free(p, x);
            live[j] = live[--cnt];
        }
    }
    r->churn_ns = q->n_ops ? (wl_now() - t0) / (double)q->n_ops : NAN;
    wl_measure_list(q, r, head, cnt, 0);
    size_t got = wl_collect_list(head, r->addrs, r->addr_cap);
    wl_finish(p, r, got);
    free(live);
    return AP_OK;
}

/* ---- treap (W3) ----------------------------------------------------------------------- */

typedef struct wl_treap {
    ap_pool *p;
    int use_hint;
    int status;
} wl_treap;

/* Max-heap on prio; the new node is placed near its BST parent when hinting. */
static void tr_insert(wl_treap *t, tr_node **link, tr_node *parent, uint64_t key,
                      uint64_t prio)
{
    tr_node *x = *link;
    if (!x) {
        x = (tr_node *)ap_alloc(t->p, t->use_hint ? parent : NULL);
        if (!x) {
            t->status = AP_NOMEM;
            return;
        }
        x->left = x->right = NULL;
        x->key = key;
        x->prio = prio;
        *link = x;
        return;
    }
    if (key < x->key) {
        tr_insert(t, &x->left, x, key, prio);
        tr_node *l = x->left;
        if (l && l->prio > x->prio) { /* rotate right */
            x->left = l->right;
            l->right = x;
            *link = l;
        }
    } else {
        tr_insert(t, &x->right, x, key, prio);
        tr_node *rr = x->right;
        if (rr && rr->prio > x->prio) { /* rotate left */
            x->right = rr->left;
            rr->left = x;
            *link = rr;
        }
    }
}

/* Rotate the node down to a leaf, then unlink and free it. */
static void tr_delete(wl_treap *t, tr_node **link, uint64_t key)
{
    while (*link && (*link)->key != key) link = key < (*link)->key ? &(*link)->left : &(*link)->right;
    tr_node *x = *link;
    if (!x) return;
    while (x->left || x->right) {
        if (!x->right || (x->left && x->left->prio > x->right->prio)) {
            tr_node *l = x->left;
            x->left = l->right;
            l->right = x;
            *link = l;
            link = &l->right;
        } else {
            tr_node *rr = x->right;
            x->right = rr->left;
            rr->left = x;
            *link = rr;
            link = &rr->left;
        }
    }
    *link = NULL;
    ap_free(t->p, x);
}

/* In-order walk with an explicit stack; out == NULL times it, otherwise records. */
static double tr_inorder(tr_node *root, tr_node **stack, uint64_t *out, size_t *count)
{
    uint64_t sum = 0;
    size_t sp = 0, i = 0;
    tr_node *x = root;
    double t0 = wl_now();
    while (x || sp) {
        while (x) {
            stack[sp++] = x;
            x = x->left;
        }
        x = stack[--sp];
        sum += x->key;
        if (out) out[i] = (uint64_t)(uintptr_t)x;
        ++i;
        x = x->right;
    }
    double t1 = wl_now();
    wl_sink += sum;
    *count = i;
    return i ? (t1 - t0) / (double)i : NAN;
}

static int wl_tree_churn(ap_pool *p, const wl_params *q, wl_result *r)
{
    size_t n = q->n;
    uint64_t *keys = (uint64_t *)malloc((n ? n : 1) * sizeof *keys);
    tr_node **stack = (tr_node **)malloc((n + 1) * sizeof *stack);
    if (!keys || !stack) {
        free(keys);
        free(stack);
        return AP_NOMEM;
    }
    wl_treap t = {p, q->use_hint, AP_OK};
    tr_node *root = NULL;
    uint64_t rng = q->seed, ctr = 0, salt = wl_mix(q->seed ^ 0x5bd1e995ULL);
    double t0 = wl_now();
    for (size_t i = 0; i < n && t.status == AP_OK; ++i) {
        keys[i] = wl_mix(salt + ctr++); /* distinct: bijection of distinct inputs */
        tr_insert(&t, &root, NULL, keys[i], wl_rand(&rng));
    }
    r->build_ns = n ? (wl_now() - t0) / (double)n : NAN;
    t0 = wl_now();
    for (size_t o = 0; o < q->n_ops && n && t.status == AP_OK; ++o) {
        size_t j = wl_below(&rng, n);
        tr_delete(&t, &root, keys[j]);
        keys[j] = wl_mix(salt + ctr++);
        tr_insert(&t, &root, NULL, keys[j], wl_rand(&rng));
    }
    r->churn_ns = q->n_ops ? (wl_now() - t0) / (2.0 * (double)q->n_ops) : NAN;
    size_t cnt = 0;
    if (t.status == AP_OK)
        for (int k = 0; k < q->repeats; ++k) {
            if (wl_evict(q->evict_bytes)) r->status = AP_NOMEM;
            r->trav_ns[k] = tr_inorder(root, stack, NULL, &cnt);
        }
    tr_inorder(root, stack, r->addrs, &cnt); /* addr_cap >= n by construction */
    wl_finish(p, r, cnt);
    free(keys);
    free(stack);
    return t.status;
}

/* ---- the physical floor and the cache probe ------------------------------------------- */

/* n 32-byte nodes in one contiguous 64-byte-aligned array, linked in address order
 * (ordered != 0: the best layout any allocator can give a list) or in a uniformly random
 * order (ordered == 0: every step a random access, the probe for the effective cache).
 * For each of `repeats`: list_ns[k] = ns/node of the pointer walk (wl_traverse_list,
 * the same loop the workloads time) and, when scan_ns is not NULL, scan_ns[k] = ns/node
 * of an array scan summing the same keys.  evict_bytes > 0: the caches are evicted
 * (wl_evict) before every timed walk and every scan.  Returns AP_OK, AP_EINVAL or
 * AP_NOMEM. */
static int wl_layout_walk(size_t n, int ordered, uint64_t seed, int repeats,
                          double *list_ns, double *scan_ns, size_t evict_bytes)
{
    if (n < 2 || repeats < 1) return AP_EINVAL;
    size_t bytes = ap_round_up(n * sizeof(wl_node), 64);
    wl_node *a = (wl_node *)aligned_alloc(64, bytes);
    size_t *perm = (size_t *)malloc(n * sizeof *perm);
    if (!a || !perm) {
        free(a);
        free(perm);
        return AP_NOMEM;
    }
    for (size_t i = 0; i < n; ++i) perm[i] = i;
    uint64_t rng = seed;
    if (!ordered)
        for (size_t i = n - 1; i > 0; --i) {
            size_t j = wl_below(&rng, i + 1);
            size_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
        }
    for (size_t i = 0; i < n; ++i) {
        wl_node *x = &a[perm[i]];
        x->key = x->val = i;
        x->prev = i ? &a[perm[i - 1]] : NULL;
        x->next = i + 1 < n ? &a[perm[i + 1]] : NULL;
    }
    const wl_node *head = &a[perm[0]];
    free(perm);
    for (int k = 0; k < repeats; ++k) {
        if (wl_evict(evict_bytes)) {
            free(a);
            return AP_NOMEM;
        }
        list_ns[k] = wl_traverse_list(head, n);
        if (scan_ns) {
            if (wl_evict(evict_bytes)) {
                free(a);
                return AP_NOMEM;
            }
            uint64_t sum = 0;
            double t0 = wl_now();
            for (size_t i = 0; i < n; ++i) sum += a[i].key;
            double t1 = wl_now();
            wl_sink += sum;
            scan_ns[k] = (t1 - t0) / (double)n;
        }
    }
    free(a);
    return AP_OK;
}

/* Run one workload on pool p.  res buffers are sized by the caller: trav_ns
 * rounds*repeats (W4) or repeats; addrs n + n_ops (W2) or n. */
static int wl_run(ap_pool *p, const wl_params *q, wl_result *r)
{
    r->build_ns = r->alloc_ns = r->free_ns = r->churn_ns = NAN;
    r->n_nodes = r->usable_bytes = 0;
    r->status = AP_OK;
    int st;
    switch (q->workload) {
    case 1:
    case 4:
        st = wl_queue(p, q, r);
        break;
    case 2:
        st = wl_list_churn(p, q, r);
        break;
    case 3:
        st = wl_tree_churn(p, q, r);
        break;
    default:
        st = AP_EINVAL;
    }
    if (st == AP_OK && r->status != AP_OK) st = r->status; /* eviction buffer failed */
    r->status = st;
    return st;
}

#endif /* ALLOC_WORKLOADS_H */
