# cython: language_level=3
"""C-level bit I/O of effdl_lib._codec (the genome-compression chapter, 09_genome_codec).

Everything here is ``cdef inline`` and GIL-free, so another Cython module can cimport it
without importing effdl_lib._codec at run time:

    from codec cimport BitWriter, BitReader, bw_init, bw_put, bw_flush, bw_free, vint_put
    cdef BitWriter bw
    with nogil:
        bw_init(&bw, 64)
        vint_put(&bw, 300, 8)          # LEB128-style: bytes AC 02
        bw_flush(&bw)
    ... bytes(bw.buf[:bw.nbytes]) ...; bw_free(&bw)

Bits are written most-significant first.  Every reader function returns CODEC_OK or a
negative code (CODEC_TRUNCATED: the stream ends before the value does; CODEC_CORRUPT:
the bits cannot have come from the encoder); none reads past ``nbits_total``.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free

cdef enum:
    CODEC_OK = 0
    CODEC_TRUNCATED = -1
    CODEC_NOMEM = -2
    CODEC_CORRUPT = -3
    RICE_ESCAPE = 32          # a Golomb-Rice quotient >= 32 is sent as 32 ones + 64 raw bits


cdef struct BitWriter:
    uint8_t* buf
    size_t cap                # bytes allocated
    size_t nbytes             # whole bytes written
    uint64_t acc              # pending bits (low nacc bits are meaningful)
    int nacc                  # 0..7 between calls
    int oom                   # set when realloc failed; every later put is a no-op


cdef struct BitReader:
    const uint8_t* buf
    size_t nbits_total
    size_t pos                # next bit to read


cdef inline int bw_init(BitWriter* bw, size_t cap) noexcept nogil:
    if cap < 16:
        cap = 16
    bw.buf = <uint8_t*> malloc(cap)
    bw.cap = cap if bw.buf != NULL else 0
    bw.nbytes = 0
    bw.acc = 0
    bw.nacc = 0
    bw.oom = 1 if bw.buf == NULL else 0
    return CODEC_NOMEM if bw.oom else CODEC_OK


cdef inline void bw_free(BitWriter* bw) noexcept nogil:
    free(bw.buf)
    bw.buf = NULL
    bw.cap = 0


cdef inline int bw_reserve(BitWriter* bw, size_t extra) noexcept nogil:
    cdef size_t need = bw.nbytes + extra
    cdef size_t cap
    cdef uint8_t* nb
    if bw.oom:
        return CODEC_NOMEM
    if need <= bw.cap:
        return CODEC_OK
    cap = bw.cap * 2
    while cap < need:
        cap *= 2
    nb = <uint8_t*> realloc(bw.buf, cap)
    if nb == NULL:
        bw.oom = 1
        return CODEC_NOMEM
    bw.buf = nb
    bw.cap = cap
    return CODEC_OK


cdef inline void _bw_put32(BitWriter* bw, uint64_t value, int nbits) noexcept nogil:
    # nbits in 0..32, nacc <= 7: at most 39 pending bits, no overflow
    if nbits == 0:
        return
    bw.acc = (bw.acc << nbits) | (value & ((<uint64_t> 1 << nbits) - 1))
    bw.nacc += nbits
    if bw_reserve(bw, 8) != CODEC_OK:
        return
    while bw.nacc >= 8:
        bw.nacc -= 8
        bw.buf[bw.nbytes] = <uint8_t> (bw.acc >> bw.nacc)
        bw.nbytes += 1


cdef inline void bw_put(BitWriter* bw, uint64_t value, int nbits) noexcept nogil:
    """Append the low ``nbits`` (0..64) bits of value, most significant first."""
    if nbits > 32:
        _bw_put32(bw, value >> 32, nbits - 32)
        _bw_put32(bw, value & (<uint64_t> 0xFFFFFFFF), 32)
    else:
        _bw_put32(bw, value, nbits)


cdef inline void bw_put_zeros(BitWriter* bw, uint64_t count) noexcept nogil:
    while count >= 32:
        _bw_put32(bw, 0, 32)
        count -= 32
    _bw_put32(bw, 0, <int> count)


cdef inline void bw_flush(BitWriter* bw) noexcept nogil:
    """Pad the last byte with zero bits."""
    if bw.nacc > 0:
        _bw_put32(bw, 0, 8 - bw.nacc)


cdef inline size_t bw_bits(const BitWriter* bw) noexcept nogil:
    return bw.nbytes * 8 + <size_t> bw.nacc


cdef inline void br_init(BitReader* br, const uint8_t* buf, size_t nbytes) noexcept nogil:
    br.buf = buf
    br.nbits_total = nbytes * 8
    br.pos = 0


cdef inline int br_get(BitReader* br, int nbits, uint64_t* out) noexcept nogil:
    """Read nbits (0..64) into *out; CODEC_TRUNCATED (and nothing consumed) past the end."""
    cdef uint64_t v = 0
    cdef size_t pos = br.pos
    cdef int avail, take
    if <size_t> nbits > br.nbits_total - pos:
        return CODEC_TRUNCATED
    while nbits > 0:
        avail = 8 - <int> (pos & 7)
        take = avail if avail < nbits else nbits
        v = (v << take) | ((br.buf[pos >> 3] >> (avail - take)) & ((1 << take) - 1))
        pos += take
        nbits -= take
    br.pos = pos
    out[0] = v
    return CODEC_OK


cdef inline uint64_t br_peek(const BitReader* br, int nbits) noexcept nogil:
    """The next nbits (<= 57) without consuming them; bits past the end read as 0."""
    cdef uint64_t v = 0
    cdef size_t pos = br.pos
    cdef size_t byte_i
    cdef int have = 0
    cdef int shift
    byte_i = pos >> 3
    shift = <int> (pos & 7)
    # gather up to 8 bytes starting at the current byte, zero-filled past the end
    while have < nbits + shift:
        v <<= 8
        if byte_i < (br.nbits_total >> 3):
            v |= br.buf[byte_i]
        byte_i += 1
        have += 8
    return (v >> (have - shift - nbits)) & ((<uint64_t> 1 << nbits) - 1)


cdef inline int br_count_ones(BitReader* br, int limit, int* out) noexcept nogil:
    """Read 1-bits up to and including the first 0, or ``limit`` ones; *out = ones read."""
    cdef int n = 0
    cdef uint8_t b
    while n < limit:
        if br.pos >= br.nbits_total:
            return CODEC_TRUNCATED
        b = (br.buf[br.pos >> 3] >> (7 - (br.pos & 7))) & 1
        br.pos += 1
        if b == 0:
            break
        n += 1
    out[0] = n
    return CODEC_OK


cdef inline int br_count_zeros(BitReader* br, int limit, int* out) noexcept nogil:
    """Read 0-bits up to (not including) the first 1; CODEC_CORRUPT after ``limit`` zeros."""
    cdef int n = 0
    while True:
        if br.pos >= br.nbits_total:
            return CODEC_TRUNCATED
        if (br.buf[br.pos >> 3] >> (7 - (br.pos & 7))) & 1:
            break
        br.pos += 1
        n += 1
        if n > limit:
            return CODEC_CORRUPT
    out[0] = n
    return CODEC_OK


cdef inline int bit_length(uint64_t v) noexcept nogil:
    cdef int n = 0
    while v:
        v >>= 1
        n += 1
    return n


# ---- variable-length integers: words of w bits, w-1 payload bits + 1 continuation bit ----
# low payload group first, continuation bit first in each word (w = 8 is LEB128)

cdef inline void vint_put(BitWriter* bw, uint64_t v, int w) noexcept nogil:
    cdef int p = w - 1
    cdef uint64_t mask = (<uint64_t> 1 << p) - 1
    while v > mask:
        bw_put(bw, (<uint64_t> 1 << p) | (v & mask), w)
        v >>= p
    bw_put(bw, v, w)


cdef inline int vint_get(BitReader* br, int w, uint64_t* out) noexcept nogil:
    cdef int p = w - 1
    cdef int shift = 0
    cdef uint64_t word, v = 0, payload
    cdef int rc
    while True:
        rc = br_get(br, w, &word)
        if rc != CODEC_OK:
            return rc
        payload = word & ((<uint64_t> 1 << p) - 1)
        if shift >= 64 or (shift > 0 and (payload >> (64 - shift)) != 0):
            if payload != 0:
                return CODEC_CORRUPT          # more than 64 bits of value
        else:
            v |= payload << shift
        shift += p
        if not (word >> p):
            break
        if shift >= 64 + w:
            return CODEC_CORRUPT
    out[0] = v
    return CODEC_OK


# ---- Elias gamma (v >= 1) and delta (v >= 1) ----

cdef inline void gamma_put(BitWriter* bw, uint64_t v) noexcept nogil:
    cdef int n = bit_length(v)
    bw_put_zeros(bw, <uint64_t> (n - 1))
    bw_put(bw, v, n)


cdef inline int gamma_get(BitReader* br, uint64_t* out) noexcept nogil:
    cdef int zeros
    cdef int rc = br_count_zeros(br, 63, &zeros)
    if rc != CODEC_OK:
        return rc
    return br_get(br, zeros + 1, out)


cdef inline void delta_put(BitWriter* bw, uint64_t v) noexcept nogil:
    cdef int n = bit_length(v)
    gamma_put(bw, <uint64_t> n)
    bw_put(bw, v, n - 1)            # the leading 1 is implied


cdef inline int delta_get(BitReader* br, uint64_t* out) noexcept nogil:
    cdef uint64_t n, low
    cdef int rc = gamma_get(br, &n)
    if rc != CODEC_OK:
        return rc
    if n < 1 or n > 64:
        return CODEC_CORRUPT
    rc = br_get(br, <int> n - 1, &low)
    if rc != CODEC_OK:
        return rc
    out[0] = ((<uint64_t> 1 << (n - 1)) | low) if n < 65 else low
    return CODEC_OK


# ---- Golomb-Rice with parameter k (0..63); quotients >= RICE_ESCAPE escape to 64 raw bits ----

cdef inline void rice_put(BitWriter* bw, uint64_t v, int k) noexcept nogil:
    cdef uint64_t q = v >> k
    if q < RICE_ESCAPE:
        bw_put(bw, ((<uint64_t> 1 << q) - 1) << 1, <int> q + 1)
        bw_put(bw, v, k)
    else:
        bw_put(bw, (<uint64_t> 1 << RICE_ESCAPE) - 1, RICE_ESCAPE)
        bw_put(bw, v, 64)


cdef inline int rice_get(BitReader* br, int k, uint64_t* out) noexcept nogil:
    cdef int q
    cdef uint64_t low
    cdef int rc = br_count_ones(br, RICE_ESCAPE, &q)
    if rc != CODEC_OK:
        return rc
    if q == RICE_ESCAPE:
        return br_get(br, 64, out)
    rc = br_get(br, k, &low)
    if rc != CODEC_OK:
        return rc
    out[0] = (<uint64_t> q << k) | low
    return CODEC_OK
