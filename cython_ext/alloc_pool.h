/* Fixed-size object pools behind one C interface (Fast Bitmap Fit and baselines).
 *
 * Kinds: AP_SYSTEM (malloc/free), AP_LIFO (intrusive LIFO free list, what thread caches
 * do), AP_BITMAP (Fast Bitmap Fit: per-chunk 64-ary bit trees, lowest free address first),
 * AP_ORDERED (address-ordered intrusive free list, O(n) free, like Boost's ordered_free).
 *
 * Memory layout of the pool kinds: one page-aligned virtual range is reserved per pool
 * (PROT_NONE, MAP_NORESERVE) and chunks are committed from it in order, sizes
 * initial_slots * 2^c (the last one truncated to the capacity).  Chunks are therefore
 * adjacent and in creation order == address order, so "lowest free address" is global
 * and the layout a workload produces is a deterministic function of the operation
 * sequence (addresses differ between runs only by the base).  The three pool kinds share
 * this arena code, so they have identical footprints and differ only in placement.
 *
 * Bitmap metadata lives in separately malloc'd words (one bit per slot plus ~1/63 for
 * upper levels); object memory holds nothing but objects.  LIFO and ordered pools
 * thread their free lists through the free slots themselves, as real pools do.
 *
 * Error model: ap_free on a bitmap pool detects foreign/misaligned pointers and double
 * frees for free (it needs the slot index and leaf bit anyway).  The list pools and the
 * system allocator trust the caller in C; the Python layer checks before calling. */
#ifndef ALLOC_POOL_H
#define ALLOC_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { AP_SYSTEM = 0, AP_LIFO = 1, AP_BITMAP = 2, AP_ORDERED = 3 };
enum { AP_OK = 0, AP_FOREIGN = 1, AP_DOUBLE_FREE = 2, AP_NOMEM = 3, AP_EINVAL = 4 };

#define AP_MAX_CHUNKS 64 /* chunk_free_mask is one word */
#define AP_MAX_LEVELS 11 /* 64^11 > 2^64 leaves */
#define AP_PAGE ((size_t)4096)
#define AP_DEFAULT_RESERVE ((size_t)1 << 36) /* 64 GiB of address space, not memory */
#define AP_MAX_RESERVE ((size_t)1 << 47)
#define AP_MAX_STRIDE ((size_t)1 << 16)

typedef struct ap_chunk {
    size_t first;                /* global index of the chunk's first slot */
    size_t n;                    /* slots in the chunk */
    uint64_t *bits;              /* bitmap kind: all levels, leaves first; 1 = free */
    size_t off[AP_MAX_LEVELS];   /* word offset of each level inside bits */
    size_t nw[AP_MAX_LEVELS];    /* words in each level; nw[top] == 1 */
    int top;
} ap_chunk;

typedef struct ap_pool {
    int kind;
    size_t stride;          /* bytes per slot (== obj_size) */
    size_t max_slots;       /* capacity; for pool kinds also bounded by the reservation */
    size_t n_used;
    size_t meta_bytes;      /* bytes of bitmap metadata */
    /* arena (pool kinds) */
    char *base;
    size_t reserve_bytes, committed_bytes;
    uint64_t recip;         /* ceil(2^64 / stride): exact offset / stride below 2^48 */
    size_t n_slots;         /* slots in committed chunks */
    size_t limit_bytes;     /* n_slots * stride: end of the owned range */
    size_t initial_slots;
    int init_shift;
    int n_chunks;
    ap_chunk chunks[AP_MAX_CHUNKS];
    uint64_t chunk_free_mask; /* bitmap: bit c set <=> chunk c has a free slot */
    /* bitmap cursor: when cur_ok, leaf word cur_w of chunk cur_c is the lowest non-empty
     * leaf word of the pool, so lowest-first allocation skips the descent */
    int cur_ok, cur_c;
    size_t cur_w;
    /* list pools */
    void *head;             /* free list (ordered: ascending addresses) */
    size_t bump;            /* slots below bump have been handed out at least once */
} ap_pool;

static inline int ap_ctz(uint64_t w) { return __builtin_ctzll(w); }

/* off / stride without a hardware divide (it dominated free): with M = ceil(2^64 / d)
 * and d <= 2^16, (M * off) >> 64 is exact for off < 2^48 (Lemire, Kaser & Kurz 2019). */
static inline size_t ap_slot_of(const ap_pool *p, size_t off)
{
    return (size_t)(((__uint128_t)p->recip * off) >> 64);
}

static inline size_t ap_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* ---- arena -------------------------------------------------------------------------- */

static int ap_tree_build(ap_chunk *c)
{
    size_t total = 0, nw = (c->n + 63) / 64;
    int l = 0;
    for (;;) {
        c->off[l] = total;
        c->nw[l] = nw;
        total += nw;
        if (nw == 1) break;
        nw = (nw + 63) / 64;
        ++l;
    }
    c->top = l;
    c->bits = (uint64_t *)calloc(total, sizeof(uint64_t));
    if (!c->bits) return AP_NOMEM;
    /* leaves: n ones; padding bits stay 0 so they are never found */
    for (size_t i = 0; i < c->n / 64; ++i) c->bits[i] = ~(uint64_t)0;
    if (c->n % 64) c->bits[c->n / 64] = ((uint64_t)1 << (c->n % 64)) - 1;
    /* every lower-level word is non-empty, so each upper level starts with nw ones */
    for (l = 1; l <= c->top; ++l) {
        size_t below = c->nw[l - 1];
        uint64_t *w = c->bits + c->off[l];
        for (size_t i = 0; i < below / 64; ++i) w[i] = ~(uint64_t)0;
        if (below % 64) w[below / 64] = ((uint64_t)1 << (below % 64)) - 1;
    }
    return AP_OK;
}

/* Commit the next chunk.  Chunk c holds initial_slots << c slots (capped by capacity). */
static int ap_grow(ap_pool *p)
{
    if (p->n_slots >= p->max_slots || p->n_chunks >= AP_MAX_CHUNKS) return AP_NOMEM;
    size_t left = p->max_slots - p->n_slots, n = left;
    if (p->n_chunks + p->init_shift < 62 && (p->initial_slots << p->n_chunks) < left)
        n = p->initial_slots << p->n_chunks;
    size_t need = ap_round_up((p->n_slots + n) * p->stride, AP_PAGE);
    if (need > p->committed_bytes) {
        if (mprotect(p->base + p->committed_bytes, need - p->committed_bytes,
                     PROT_READ | PROT_WRITE) != 0)
            return AP_NOMEM;
        p->committed_bytes = need;
    }
    ap_chunk *c = &p->chunks[p->n_chunks];
    memset(c, 0, sizeof *c);
    c->first = p->n_slots;
    c->n = n;
    if (p->kind == AP_BITMAP) {
        if (ap_tree_build(c) != AP_OK) return AP_NOMEM;
        size_t words = 0;
        for (int l = 0; l <= c->top; ++l) words += c->nw[l];
        p->meta_bytes += words * sizeof(uint64_t);
        p->chunk_free_mask |= (uint64_t)1 << p->n_chunks;
    }
    p->n_chunks++;
    p->n_slots += n;
    p->limit_bytes = p->n_slots * p->stride;
    return AP_OK;
}

/* Geometric sizes make the chunk of a slot a closed form: c = floor(log2(s/init + 1)). */
static inline int ap_chunk_of(const ap_pool *p, size_t slot)
{
    return 63 - __builtin_clzll((uint64_t)(slot >> p->init_shift) + 1);
}

/* obj_size: bytes per slot (pool kinds: >= 8 and a multiple of 8, the free lists store a
 * pointer in free slots).  capacity: max live objects (0 = unbounded).  initial_slots:
 * power of two.  reserve_bytes: address space to reserve (0 = capacity or default). */
static int ap_init(ap_pool *p, int kind, size_t obj_size, size_t capacity,
                   size_t initial_slots, size_t reserve_bytes)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->stride = obj_size;
    p->max_slots = capacity;
    if (obj_size == 0 || kind < AP_SYSTEM || kind > AP_ORDERED) return AP_EINVAL;
    if (kind == AP_SYSTEM) return AP_OK;
    if (obj_size < 8 || obj_size % 8 || obj_size > AP_MAX_STRIDE || initial_slots == 0 ||
        (initial_slots & (initial_slots - 1)))
        return AP_EINVAL;
    p->initial_slots = initial_slots;
    p->init_shift = ap_ctz(initial_slots);
    if (reserve_bytes == 0)
        reserve_bytes = !capacity ? AP_DEFAULT_RESERVE
                        : capacity > AP_MAX_RESERVE / obj_size ? AP_MAX_RESERVE
                        : capacity * obj_size;
    if (reserve_bytes > AP_MAX_RESERVE) reserve_bytes = AP_MAX_RESERVE;
    reserve_bytes = ap_round_up(reserve_bytes, AP_PAGE);
    p->recip = UINT64_MAX / obj_size + 1;
    void *m = MAP_FAILED;
    /* fall back to smaller reservations where address space is limited (ulimit -v) */
    while (reserve_bytes >= AP_PAGE) {
        m = mmap(NULL, reserve_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
        if (m != MAP_FAILED || capacity) break;
        reserve_bytes = ap_round_up(reserve_bytes / 2, AP_PAGE);
    }
    if (m == MAP_FAILED) return AP_NOMEM;
    p->base = (char *)m;
    p->reserve_bytes = reserve_bytes;
    size_t fit = reserve_bytes / obj_size;
    if (!capacity || capacity > fit) p->max_slots = fit;
    return AP_OK;
}

static void ap_destroy(ap_pool *p)
{
    for (int c = 0; c < p->n_chunks; ++c) free(p->chunks[c].bits);
    if (p->base) munmap(p->base, p->reserve_bytes);
    memset(p, 0, sizeof *p);
}

/* Slot start inside a committed chunk?  (Says nothing about allocated vs free.) */
static inline int ap_owns(const ap_pool *p, const void *ptr)
{
    size_t off = (size_t)((const char *)ptr - p->base);
    return p->kind != AP_SYSTEM && off < p->limit_bytes && ap_slot_of(p, off) * p->stride == off;
}

/* ---- Fast Bitmap Fit ---------------------------------------------------------------- */

static inline size_t ap_tree_first(const ap_chunk *c)
{
    size_t i = 0;
    for (int l = c->top; l >= 0; --l) i = (i << 6) | (size_t)ap_ctz(c->bits[c->off[l] + i]);
    return i;
}

/* Lowest free leaf >= i, or (size_t)-1.  Climb while the rest of the word is empty, then
 * descend along lowest set bits: O(levels), a handful of words. */
static inline size_t ap_tree_next(const ap_chunk *c, size_t i)
{
    int l = 0;
    for (;;) {
        size_t wi = i >> 6;
        if (wi >= c->nw[l]) return (size_t)-1;
        uint64_t w = c->bits[c->off[l] + wi] & (~(uint64_t)0 << (i & 63));
        if (w) {
            i = (wi << 6) | (size_t)ap_ctz(w);
            break;
        }
        if (l == c->top) return (size_t)-1;
        i = wi + 1;
        ++l;
    }
    while (l > 0) {
        --l;
        i = (i << 6) | (size_t)ap_ctz(c->bits[c->off[l] + i]);
    }
    return i;
}

/* Mark leaf i used.  Returns 0, 1 when its leaf word became empty, 2 when the whole
 * chunk became full. */
static inline int ap_tree_take(ap_chunk *c, size_t i)
{
    for (int l = 0; l <= c->top; ++l) {
        uint64_t *w = &c->bits[c->off[l] + (i >> 6)];
        *w &= ~((uint64_t)1 << (i & 63));
        if (*w) return l ? 1 : 0;
        i >>= 6;
    }
    return 2;
}

/* Mark leaf i free; AP_DOUBLE_FREE when it already was. */
static inline int ap_tree_give(ap_chunk *c, size_t i)
{
    uint64_t *w = &c->bits[c->off[0] + (i >> 6)];
    if (*w & ((uint64_t)1 << (i & 63))) return AP_DOUBLE_FREE;
    for (int l = 0;; ++l) {
        w = &c->bits[c->off[l] + (i >> 6)];
        uint64_t was = *w;
        *w = was | ((uint64_t)1 << (i & 63));
        if (was || l == c->top) break; /* parent bit already says "has free" */
        i >>= 6;
    }
    return AP_OK;
}

static inline void *ap_bitmap_take(ap_pool *p, int ci, size_t leaf)
{
    ap_chunk *c = &p->chunks[ci];
    int emptied = ap_tree_take(c, leaf);
    if (emptied == 2) p->chunk_free_mask &= ~((uint64_t)1 << ci);
    if (emptied && p->cur_ok && p->cur_c == ci && p->cur_w == (leaf >> 6)) p->cur_ok = 0;
    p->n_used++;
    return p->base + (c->first + leaf) * p->stride;
}

static inline void *ap_bitmap_alloc(ap_pool *p)
{
    if (p->cur_ok) { /* fast path: lowest bit of the cached lowest leaf word */
        ap_chunk *c = &p->chunks[p->cur_c];
        uint64_t *w = &c->bits[p->cur_w]; /* leaves are level 0, at offset 0 */
        size_t leaf = (p->cur_w << 6) | (size_t)ap_ctz(*w);
        if (*w & (*w - 1)) {
            *w &= *w - 1;
            p->n_used++;
            return p->base + (c->first + leaf) * p->stride;
        }
        return ap_bitmap_take(p, p->cur_c, leaf); /* word empties: propagate upward */
    }
    if (!p->chunk_free_mask && ap_grow(p) != AP_OK) return NULL;
    int ci = ap_ctz(p->chunk_free_mask);
    size_t leaf = ap_tree_first(&p->chunks[ci]);
    void *r = ap_bitmap_take(p, ci, leaf);
    if (p->chunks[ci].bits[leaf >> 6]) { /* remember the word while it has free bits */
        p->cur_ok = 1;
        p->cur_c = ci;
        p->cur_w = leaf >> 6;
    }
    return r;
}

/* Free slot at or above the hint's slot within the hint's chunk; otherwise lowest-first.
 * Searching upward keeps successors in front of their predecessor (forward steps). */
static inline void *ap_bitmap_alloc_near(ap_pool *p, const void *hint)
{
    size_t off = (size_t)((const char *)hint - p->base);
    if (off < p->limit_bytes) {
        size_t s = ap_slot_of(p, off);
        int ci = ap_chunk_of(p, s);
        if ((p->chunk_free_mask >> ci) & 1) {
            size_t leaf = ap_tree_next(&p->chunks[ci], s - p->chunks[ci].first);
            if (leaf != (size_t)-1) return ap_bitmap_take(p, ci, leaf);
        }
    }
    return ap_bitmap_alloc(p);
}

static inline int ap_bitmap_free(ap_pool *p, void *ptr)
{
    size_t off = (size_t)((char *)ptr - p->base);
    if (off >= p->limit_bytes) return AP_FOREIGN;
    size_t s = ap_slot_of(p, off);
    if (s * p->stride != off) return AP_FOREIGN; /* interior pointer */
    int ci = ap_chunk_of(p, s);
    ap_chunk *c = &p->chunks[ci];
    size_t leaf = s - c->first;
    if (ap_tree_give(c, leaf) != AP_OK) return AP_DOUBLE_FREE;
    p->chunk_free_mask |= (uint64_t)1 << ci;
    p->n_used--;
    /* a free below the cursor becomes the new lowest word; an invalid cursor stays
     * invalid (lower free words may exist) until the next descent */
    if (p->cur_ok && (ci < p->cur_c || (ci == p->cur_c && (leaf >> 6) < p->cur_w))) {
        p->cur_c = ci;
        p->cur_w = leaf >> 6;
    }
    return AP_OK;
}

/* Is a committed bitmap slot free?  1 free, 0 allocated, -1 when the pool is not a
 * bitmap pool or the slot is not committed.  (For checks and tests, not hot paths.) */
static inline int ap_bitmap_is_free(const ap_pool *p, size_t slot)
{
    if (p->kind != AP_BITMAP || slot >= p->n_slots) return -1;
    const ap_chunk *c = &p->chunks[ap_chunk_of(p, slot)];
    size_t i = slot - c->first;
    return (int)((c->bits[c->off[0] + (i >> 6)] >> (i & 63)) & 1);
}

/* ---- list pools --------------------------------------------------------------------- */

/* Both list pools pop the head; only free differs.  Never-used slots (>= bump) lie above
 * every freed slot, so popping the ordered list before bumping is lowest-first too. */
static inline void *ap_list_alloc(ap_pool *p)
{
    void *r = p->head;
    if (r) {
        p->head = *(void **)r;
    } else {
        if (p->bump == p->n_slots && ap_grow(p) != AP_OK) return NULL;
        r = p->base + p->bump++ * p->stride;
    }
    p->n_used++;
    return r;
}

static inline int ap_lifo_free(ap_pool *p, void *ptr)
{
    *(void **)ptr = p->head;
    p->head = ptr;
    p->n_used--;
    return AP_OK;
}

/* O(free-list length): walk to the first free slot above ptr. */
static inline int ap_ordered_free(ap_pool *p, void *ptr)
{
    void **link = &p->head;
    while (*link && (char *)*link < (char *)ptr) link = (void **)*link;
    *(void **)ptr = *link;
    *link = ptr;
    p->n_used--;
    return AP_OK;
}

/* ---- system allocator --------------------------------------------------------------- */

static inline void *ap_system_alloc(ap_pool *p)
{
    if (p->max_slots && p->n_used >= p->max_slots) return NULL;
    void *r = malloc(p->stride);
    if (r) p->n_used++;
    return r;
}

static inline int ap_system_free(ap_pool *p, void *ptr)
{
    free(ptr);
    p->n_used--;
    return AP_OK;
}

/* ---- one interface ------------------------------------------------------------------ */

/* hint: an address near which to place the object (only the bitmap kind uses it);
 * NULL = lowest-first.  Returns NULL when the capacity or memory is exhausted. */
static inline void *ap_alloc(ap_pool *p, const void *hint)
{
    switch (p->kind) {
    case AP_BITMAP:
        return hint ? ap_bitmap_alloc_near(p, hint) : ap_bitmap_alloc(p);
    case AP_LIFO:
    case AP_ORDERED:
        return ap_list_alloc(p);
    default:
        return ap_system_alloc(p);
    }
}

static inline int ap_free(ap_pool *p, void *ptr)
{
    switch (p->kind) {
    case AP_BITMAP:
        return ap_bitmap_free(p, ptr);
    case AP_LIFO:
        return ap_lifo_free(p, ptr);
    case AP_ORDERED:
        return ap_ordered_free(p, ptr);
    default:
        return ap_system_free(p, ptr);
    }
}

#endif /* ALLOC_POOL_H */
