# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Bit-level coders for genome compression against a reference (chapter 09_genome_codec).

Compiled into ``effdl_lib._codec``; the chapter module ``effdl_lib.chapters.genome_codec``
builds the DNAZip layout and the paper's improvements on top of it.  Every coder takes a
NumPy array (typed memoryview) and returns ``bytes`` (a whole number of bytes, zero-padded);
every decoder takes ``bytes`` and the number of items to decode and returns a NumPy array.
The loops run without the GIL.  A decoder raises :class:`TruncatedStreamError` when the
stream ends before the last item and :class:`CorruptStreamError` when the bits cannot
have come from the encoder; neither ever reads past the buffer.

Coders: raw bit fields (BitWriter / BitReader), VINT with word size w (w-1 payload bits
plus a continuation bit; w = 8 is LEB128), Elias gamma and delta (values >= 1),
Golomb-Rice (parameter k, escape for quotients >= 32), canonical Huffman with code
lengths limited to 15 bits and the table in-band (4 bits per symbol of the alphabet),
k-bit chunk Huffman for bitvectors, 2-bit base packing, and an adaptive binary arithmetic
(range) coder with a context of the previous c bits.
"""
import heapq

import numpy as np

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free

from codec cimport *

MAX_CODE_LENGTH = 15
RICE_ESCAPE_QUOTIENT = RICE_ESCAPE


class CodecError(ValueError):
    """A stream cannot be decoded."""


class TruncatedStreamError(CodecError):
    """The stream ends before the last value; nothing past the buffer was read."""


class CorruptStreamError(CodecError):
    """The bits are not a valid encoding (a bad table, a value over 64 bits, ...)."""


cdef object _raise(int rc, str what, Py_ssize_t i, Py_ssize_t n, size_t pos, size_t total):
    if rc == CODEC_TRUNCATED:
        raise TruncatedStreamError(
            f"{what}: stream truncated while decoding item {i} of {n} "
            f"(at bit {pos} of a {total}-bit buffer)")
    if rc == CODEC_NOMEM:
        raise MemoryError(f"{what}: out of memory")
    raise CorruptStreamError(f"{what}: corrupt stream at item {i} of {n} (bit {pos} of {total})")


cdef bytes _finish(BitWriter* bw):
    """Flush, copy out and free the writer's buffer."""
    bw_flush(bw)
    if bw.oom:
        bw_free(bw)
        raise MemoryError("codec: out of memory while encoding")
    out = bw.buf[:bw.nbytes] if bw.nbytes else b""
    bw_free(bw)
    return out


def _as_u64(values, str what):
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{what}: values must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"{what}: values must be non-negative, got {int(arr.min())}")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def _as_bits(bits, str what):
    arr = np.ascontiguousarray(np.asarray(bits).reshape(-1), dtype=np.uint8) if np.size(bits) else np.zeros(0, np.uint8)
    if arr.size and arr.max() > 1:
        raise ValueError(f"{what}: a bitvector holds only 0 and 1, got {int(arr.max())}")
    return arr


def _check_count(n, str what):
    if n < 0:
        raise ValueError(f"{what}: count must be >= 0, got {n}")


cdef const uint8_t* _ptr(const uint8_t[::1] view) noexcept nogil:
    if view.shape[0] == 0:
        return NULL
    return &view[0]


def _view(data):
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)
    return np.ascontiguousarray(data, dtype=np.uint8)


# ------------------------------------------------------------------ raw bit fields

cdef class BitWriterPy:
    """Python face of the bit writer: ``write(value, nbits)`` then ``getvalue()``."""
    cdef BitWriter bw

    def __cinit__(self):
        if bw_init(&self.bw, 64) != CODEC_OK:
            raise MemoryError("BitWriter: out of memory")

    def __dealloc__(self):
        bw_free(&self.bw)

    def write(self, value, int nbits):
        if not 0 <= nbits <= 64:
            raise ValueError(f"nbits must be in 0..64, got {nbits}")
        if value < 0 or int(value).bit_length() > nbits:
            raise ValueError(f"value {value} does not fit in {nbits} bits")
        bw_put(&self.bw, <uint64_t> value, nbits)
        if self.bw.oom:
            raise MemoryError("BitWriter: out of memory")

    @property
    def bits(self):
        return bw_bits(&self.bw)

    def getvalue(self):
        """The bytes written so far, the last one zero-padded (the writer stays usable)."""
        cdef bytes head = self.bw.buf[:self.bw.nbytes] if self.bw.nbytes else b""
        if self.bw.nacc:
            return head + bytes([(self.bw.acc << (8 - self.bw.nacc)) & 0xFF])
        return head


cdef class BitReaderPy:
    """Python face of the bit reader: ``read(nbits)``; raises at the end of the buffer."""
    cdef BitReader br
    cdef object data

    def __cinit__(self, data):
        self.data = bytes(data)
        br_init(&self.br, <const uint8_t*> <char*> self.data, len(self.data))

    def read(self, int nbits):
        cdef uint64_t v
        if not 0 <= nbits <= 64:
            raise ValueError(f"nbits must be in 0..64, got {nbits}")
        rc = br_get(&self.br, nbits, &v)
        if rc != CODEC_OK:
            raise TruncatedStreamError(
                f"BitReader: {nbits} bits requested at bit {self.br.pos} of a "
                f"{self.br.nbits_total}-bit buffer")
        return int(v)

    @property
    def bits_left(self):
        return self.br.nbits_total - self.br.pos


# ------------------------------------------------------------------ integer coders

def _check_param(str coder, int param):
    if coder == "vint" and not 2 <= param <= 64:
        raise ValueError(f"VINT word size w must be in 2..64, got {param}")
    if coder == "rice" and not 0 <= param <= 63:
        raise ValueError(f"Golomb-Rice parameter k must be in 0..63, got {param}")


cdef int _encode_ints(BitWriter* bw, const uint64_t[::1] v, int coder, int param) noexcept nogil:
    # coder: 0 vint, 1 gamma, 2 delta, 3 rice; returns the index of a bad value or -1
    cdef Py_ssize_t i
    for i in range(v.shape[0]):
        if coder == 0:
            vint_put(bw, v[i], param)
        elif coder == 1:
            if v[i] == 0:
                return <int> i
            gamma_put(bw, v[i])
        elif coder == 2:
            if v[i] == 0:
                return <int> i
            delta_put(bw, v[i])
        else:
            rice_put(bw, v[i], param)
    return -1


cdef int _decode_ints(BitReader* br, uint64_t[::1] out, int coder, int param,
                      Py_ssize_t* at) noexcept nogil:
    cdef Py_ssize_t i
    cdef int rc = CODEC_OK
    for i in range(out.shape[0]):
        at[0] = i
        if coder == 0:
            rc = vint_get(br, param, &out[i])
        elif coder == 1:
            rc = gamma_get(br, &out[i])
        elif coder == 2:
            rc = delta_get(br, &out[i])
        else:
            rc = rice_get(br, param, &out[i])
        if rc != CODEC_OK:
            return rc
    return CODEC_OK


_CODERS = {"vint": 0, "gamma": 1, "delta": 2, "rice": 3}
_NAMES = {"vint": "VINT", "gamma": "Elias gamma", "delta": "Elias delta", "rice": "Golomb-Rice"}


def encode_ints(values, str coder, int param=0):
    """Encode non-negative integers with coder 'vint' (param = word size w), 'gamma' or
    'delta' (values >= 1) or 'rice' (param = k)."""
    if coder not in _CODERS:
        raise ValueError(f"unknown integer coder {coder!r}; choose one of {sorted(_CODERS)}")
    _check_param(coder, param)
    cdef const uint64_t[::1] v = _as_u64(values, _NAMES[coder])
    cdef BitWriter bw
    cdef int code = _CODERS[coder]
    cdef int bad
    if bw_init(&bw, v.shape[0] + 16) != CODEC_OK:
        raise MemoryError("codec: out of memory")
    with nogil:
        bad = _encode_ints(&bw, v, code, param)
    if bad >= 0:
        bw_free(&bw)
        raise ValueError(f"{_NAMES[coder]} codes values >= 1; item {bad} is 0")
    return _finish(&bw)


def decode_ints(data, Py_ssize_t n, str coder, int param=0):
    """Decode n integers written by :func:`encode_ints`; returns uint64."""
    if coder not in _CODERS:
        raise ValueError(f"unknown integer coder {coder!r}; choose one of {sorted(_CODERS)}")
    _check_param(coder, param)
    _check_count(n, _NAMES[coder])
    cdef const uint8_t[::1] buf = _view(data)
    out_arr = np.zeros(n, dtype=np.uint64)
    cdef uint64_t[::1] out = out_arr
    cdef BitReader br
    cdef int rc
    cdef int code = _CODERS[coder]
    cdef Py_ssize_t at = 0
    br_init(&br, _ptr(buf), buf.shape[0])
    with nogil:
        rc = _decode_ints(&br, out, code, param, &at)
    if rc != CODEC_OK:
        _raise(rc, _NAMES[coder], at, n, br.pos, br.nbits_total)
    return out_arr


def vint_encode(values, int w=8):
    """VINT with w-bit words (w-1 payload bits, continuation bit first, low group first)."""
    return encode_ints(values, "vint", w)


def vint_decode(data, Py_ssize_t n, int w=8):
    return decode_ints(data, n, "vint", w)


def gamma_encode(values):
    return encode_ints(values, "gamma")


def gamma_decode(data, Py_ssize_t n):
    return decode_ints(data, n, "gamma")


def delta_encode(values):
    return encode_ints(values, "delta")


def delta_decode(data, Py_ssize_t n):
    return decode_ints(data, n, "delta")


def rice_encode(values, int k):
    return encode_ints(values, "rice", k)


def rice_decode(data, Py_ssize_t n, int k):
    return decode_ints(data, n, "rice", k)


def vint_bits(values, int w):
    """Exact size in bits of the VINT coding of values (no padding), computed in closed form."""
    _check_param("vint", w)
    v = _as_u64(values, "VINT")
    nbits = np.zeros(v.shape, dtype=np.int64)
    nz = v > 0
    nbits[nz] = np.floor(np.log2(v[nz].astype(np.float64))).astype(np.int64) + 1
    # float log2 can be off by one near powers of two above 2^52: fix exactly
    big = v >= (1 << 52)
    if big.any():
        nbits[big] = [int(x).bit_length() for x in v[big]]
    words = np.maximum(1, -(-nbits // (w - 1)))
    return int(words.sum()) * w


# ------------------------------------------------------------------ 2-bit bases

def pack_bases(codes):
    """Pack base codes 0..3 (A, C, G, T) four to a byte, first base in the high bits."""
    cdef const uint8_t[::1] c = np.ascontiguousarray(np.asarray(codes).reshape(-1), dtype=np.uint8) \
        if np.size(codes) else np.zeros(0, np.uint8)
    if c.shape[0] and np.asarray(c).max() > 3:
        raise ValueError(f"2-bit packing takes base codes 0..3, got {int(np.asarray(c).max())}")
    cdef Py_ssize_t n = c.shape[0], i
    out_arr = np.zeros((n + 3) // 4, dtype=np.uint8)
    cdef uint8_t[::1] out = out_arr
    with nogil:
        for i in range(n):
            out[i >> 2] |= c[i] << (6 - 2 * (i & 3))
    return out_arr.tobytes()


def unpack_bases(data, Py_ssize_t n):
    _check_count(n, "2-bit bases")
    cdef const uint8_t[::1] buf = _view(data)
    if buf.shape[0] < (n + 3) // 4:
        raise TruncatedStreamError(f"2-bit bases: {n} bases need {(n + 3) // 4} bytes, "
                                   f"the stream has {buf.shape[0]}")
    out_arr = np.zeros(n, dtype=np.uint8)
    cdef uint8_t[::1] out = out_arr
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            out[i] = (buf[i >> 2] >> (6 - 2 * (i & 3))) & 3
    return out_arr


# ------------------------------------------------------------------ Huffman

def _huffman_lengths_unlimited(freqs):
    """Code lengths of a plain Huffman code (ties broken by symbol index: deterministic)."""
    heap = [(int(f), s, (s,)) for s, f in enumerate(freqs) if f > 0]
    lengths = [0] * len(freqs)
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
        return lengths
    heapq.heapify(heap)
    order = len(freqs)
    while len(heap) > 1:
        fa, ia, sa = heapq.heappop(heap)
        fb, ib, sb = heapq.heappop(heap)
        for s in sa + sb:
            lengths[s] += 1
        heapq.heappush(heap, (fa + fb, order, sa + sb))
        order += 1
    return lengths


def _package_merge(freqs, int limit):
    """Optimal code lengths under a length limit (Larmore & Hirschberg's package-merge)."""
    leaves = sorted((int(f), s) for s, f in enumerate(freqs) if f > 0)
    n = len(leaves)
    if (1 << limit) < n:
        raise ValueError(f"{n} symbols cannot have codes of at most {limit} bits")
    # an item is (weight, tie, node); node is a symbol index (int) or a (node, node) pair
    base = [(w, i, s) for i, (w, s) in enumerate(leaves)]
    current = list(base)
    tie = n
    for _ in range(limit - 1):
        packages = []
        for j in range(0, len(current) - 1, 2):
            a, b = current[j], current[j + 1]
            packages.append((a[0] + b[0], tie, (a[2], b[2])))
            tie += 1
        current = list(heapq.merge(base, packages, key=lambda t: (t[0], t[1] >= n, t[1])))
    lengths = [0] * len(freqs)
    stack = [item[2] for item in current[:2 * n - 2]]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
        else:
            lengths[node] += 1
    return lengths


def huffman_code_lengths(freqs, int max_length=15):
    """Code lengths (np.uint8) of an optimal prefix code with no code longer than
    max_length: plain Huffman when it fits, package-merge otherwise.  Symbols with
    frequency 0 get length 0; a lone symbol gets length 1."""
    f = np.asarray(freqs)
    if f.ndim != 1 or (f.size and (f.dtype.kind not in "iu" or f.min() < 0)):
        raise ValueError("frequencies must be a 1-D array of non-negative integers")
    if not 1 <= max_length <= 15:
        raise ValueError(f"max_length must be in 1..15 (4-bit table entries), got {max_length}")
    used = int((f > 0).sum())
    if used > (1 << max_length):
        raise ValueError(f"{used} symbols cannot have codes of at most {max_length} bits")
    if used == 0:
        return np.zeros(f.size, dtype=np.uint8)
    lengths = _huffman_lengths_unlimited(f.tolist())
    if max(lengths) > max_length:
        lengths = _package_merge(f.tolist(), max_length)
    return np.asarray(lengths, dtype=np.uint8)


def canonical_codes(lengths):
    """Canonical codes (np.uint32) for code lengths: by length, then symbol index."""
    ln = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(ln.size, dtype=np.uint32)
    code = 0
    prev = 0
    for s in sorted((int(l), i) for i, l in enumerate(ln) if l > 0):
        code <<= s[0] - prev
        prev = s[0]
        codes[s[1]] = code
        code += 1
    return codes


cdef int _huff_encode(BitWriter* bw, const uint32_t[::1] sym, const uint32_t[::1] codes,
                      const uint8_t[::1] lens) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(sym.shape[0]):
        bw_put(bw, codes[sym[i]], lens[sym[i]])
    return 0


cdef int _huff_decode(BitReader* br, uint32_t[::1] out, const uint16_t[::1] tsym,
                      const uint8_t[::1] tlen, int maxlen, Py_ssize_t* at) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t key
    cdef int ln
    for i in range(out.shape[0]):
        at[0] = i
        key = br_peek(br, maxlen)
        ln = tlen[key]
        if ln == 0:
            return CODEC_CORRUPT
        if <size_t> ln > br.nbits_total - br.pos:
            return CODEC_TRUNCATED
        br.pos += ln
        out[i] = tsym[key]
    return CODEC_OK


def _check_alphabet(int alphabet_bits):
    if not 1 <= alphabet_bits <= 16:
        raise ValueError(f"alphabet_bits must be in 1..16, got {alphabet_bits}")


def huffman_table_bytes(int alphabet_bits):
    """Size of the in-band table: 4 bits per symbol of the 2^alphabet_bits alphabet."""
    return (4 << alphabet_bits) // 8


def huffman_encode(symbols, int alphabet_bits, int max_length=15):
    """Canonical length-limited Huffman: the table in-band (a 4-bit code length for each
    of the 2^alphabet_bits symbols) followed by the codes.  No symbols: empty bytes."""
    _check_alphabet(alphabet_bits)
    s = _as_u64(symbols, "Huffman")
    if s.size and int(s.max()) >= (1 << alphabet_bits):
        raise ValueError(f"Huffman: symbol {int(s.max())} outside the {alphabet_bits}-bit alphabet")
    if s.size == 0:
        return b""
    sym_arr = s.astype(np.uint32)
    freqs = np.bincount(sym_arr, minlength=1 << alphabet_bits)
    lens_arr = huffman_code_lengths(freqs, max_length)
    codes_arr = canonical_codes(lens_arr)
    cdef const uint32_t[::1] sym = sym_arr
    cdef const uint32_t[::1] codes = codes_arr
    cdef const uint8_t[::1] lens = lens_arr
    cdef BitWriter bw
    cdef Py_ssize_t i
    if bw_init(&bw, sym.shape[0] // 2 + (8 << alphabet_bits) // 8 + 16) != CODEC_OK:
        raise MemoryError("codec: out of memory")
    with nogil:
        for i in range(lens.shape[0]):
            bw_put(&bw, lens[i], 4)
        _huff_encode(&bw, sym, codes, lens)
    return _finish(&bw)


def huffman_decode(data, Py_ssize_t n, int alphabet_bits, *, return_lengths=False):
    """Decode n symbols written by :func:`huffman_encode` (np.uint32)."""
    _check_alphabet(alphabet_bits)
    _check_count(n, "Huffman")
    cdef const uint8_t[::1] buf = _view(data)
    cdef BitReader br
    cdef uint64_t ln
    cdef Py_ssize_t i, at = 0
    cdef int rc, maxlen
    if n == 0:
        out_arr = np.zeros(0, dtype=np.uint32)
        return (out_arr, np.zeros(1 << alphabet_bits, np.uint8)) if return_lengths else out_arr
    br_init(&br, _ptr(buf), buf.shape[0])
    size = 1 << alphabet_bits
    lens_arr = np.zeros(size, dtype=np.uint8)
    for i in range(size):
        rc = br_get(&br, 4, &ln)
        if rc != CODEC_OK:
            raise TruncatedStreamError(f"Huffman: stream truncated inside the code-length table "
                                       f"(entry {i} of {size}, {buf.shape[0]} bytes)")
        lens_arr[i] = ln
    maxlen = int(lens_arr.max())
    if maxlen == 0:
        raise CorruptStreamError("Huffman: the code-length table is empty")
    kraft = sum(1 << (maxlen - int(l)) for l in lens_arr if l)
    if kraft > (1 << maxlen):
        raise CorruptStreamError("Huffman: code lengths violate Kraft's inequality")
    codes_arr = canonical_codes(lens_arr)
    tsym_arr = np.zeros(1 << maxlen, dtype=np.uint16)
    tlen_arr = np.zeros(1 << maxlen, dtype=np.uint8)
    for s in np.flatnonzero(lens_arr):
        l = int(lens_arr[s])
        lo = int(codes_arr[s]) << (maxlen - l)
        tsym_arr[lo:lo + (1 << (maxlen - l))] = s
        tlen_arr[lo:lo + (1 << (maxlen - l))] = l
    out_arr = np.zeros(n, dtype=np.uint32)
    cdef uint32_t[::1] out = out_arr
    cdef const uint16_t[::1] tsym = tsym_arr
    cdef const uint8_t[::1] tlen = tlen_arr
    with nogil:
        rc = _huff_decode(&br, out, tsym, tlen, maxlen, &at)
    if rc != CODEC_OK:
        _raise(rc, "Huffman", at, n, br.pos, br.nbits_total)
    return (out_arr, lens_arr) if return_lengths else out_arr


# ------------------------------------------------------------------ k-bit chunk Huffman

def bits_to_chunks(bits, int k):
    """A 0/1 vector as k-bit symbols, first bit most significant; the last chunk is padded
    with zeros."""
    if not 1 <= k <= 16:
        raise ValueError(f"chunk size k must be in 1..16, got {k}")
    b = _as_bits(bits, "chunk Huffman")
    n = b.size
    m = (n + k - 1) // k
    padded = np.zeros(m * k, dtype=np.uint32)
    padded[:n] = b
    weights = (1 << np.arange(k - 1, -1, -1)).astype(np.uint32)
    return (padded.reshape(m, k) * weights).sum(axis=1).astype(np.uint32) if m else np.zeros(0, np.uint32)


def chunks_to_bits(chunks, Py_ssize_t n, int k):
    c = np.asarray(chunks, dtype=np.uint32)
    bits = ((c[:, None] >> np.arange(k - 1, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
    return bits.reshape(-1)[:n]


def chunk_huffman_encode(bits, int k):
    """A bitvector in k-bit chunks, Huffman-coded (table in-band, 2^k entries of 4 bits)."""
    return huffman_encode(bits_to_chunks(bits, k), k)


def chunk_huffman_decode(data, Py_ssize_t n, int k):
    """Decode an n-bit vector written by :func:`chunk_huffman_encode` (np.uint8 of 0/1)."""
    _check_count(n, "chunk Huffman")
    if not 1 <= k <= 16:
        raise ValueError(f"chunk size k must be in 1..16, got {k}")
    return chunks_to_bits(huffman_decode(data, (n + k - 1) // k, k), n, k)


# ------------------------------------------------------------------ adaptive binary arithmetic coder

cdef struct RangeEncoder:
    uint64_t low
    uint32_t range_
    uint8_t cache
    uint64_t cache_size


cdef inline void _rc_shift_low(RangeEncoder* rc, BitWriter* bw) noexcept nogil:
    cdef uint8_t temp
    if <uint32_t> rc.low < <uint32_t> 0xFF000000 or (rc.low >> 32) != 0:
        temp = rc.cache
        while True:
            bw_put(bw, <uint8_t> (temp + <uint8_t> (rc.low >> 32)), 8)
            temp = 0xFF
            rc.cache_size -= 1
            if rc.cache_size == 0:
                break
        rc.cache = <uint8_t> (rc.low >> 24)
    rc.cache_size += 1
    rc.low = (rc.low & 0x00FFFFFF) << 8


cdef void _ac_encode(BitWriter* bw, const uint8_t[::1] bits, uint16_t* probs, int ctx_bits,
                     int shift) noexcept nogil:
    cdef RangeEncoder rc
    cdef Py_ssize_t i
    cdef uint32_t bound, ctx = 0, mask = (1 << ctx_bits) - 1
    cdef uint16_t* p
    rc.low = 0
    rc.range_ = <uint32_t> 0xFFFFFFFFU
    rc.cache = 0
    rc.cache_size = 1
    for i in range(bits.shape[0]):
        p = &probs[ctx]
        bound = (rc.range_ >> 11) * p[0]
        if bits[i] == 0:
            rc.range_ = bound
            p[0] += (2048 - p[0]) >> shift
        else:
            rc.low += bound
            rc.range_ -= bound
            p[0] -= p[0] >> shift
        while rc.range_ < (1 << 24):
            rc.range_ <<= 8
            _rc_shift_low(&rc, bw)
        ctx = ((ctx << 1) | bits[i]) & mask
    for i in range(5):
        _rc_shift_low(&rc, bw)


cdef int _ac_decode(const uint8_t* buf, size_t nbytes, uint8_t[::1] out, uint16_t* probs,
                    int ctx_bits, int shift, Py_ssize_t* at, size_t* used) noexcept nogil:
    cdef size_t pos = 0
    cdef uint32_t code = 0, range_ = <uint32_t> 0xFFFFFFFFU, bound, ctx = 0, mask = (1 << ctx_bits) - 1
    cdef Py_ssize_t i
    cdef uint16_t* p
    cdef uint8_t bit
    at[0] = 0
    if nbytes < 5:
        used[0] = nbytes
        return CODEC_TRUNCATED
    for i in range(5):
        code = (code << 8) | buf[pos]
        pos += 1
    for i in range(out.shape[0]):
        at[0] = i
        p = &probs[ctx]
        bound = (range_ >> 11) * p[0]
        if code < bound:
            range_ = bound
            p[0] += (2048 - p[0]) >> shift
            bit = 0
        else:
            code -= bound
            range_ -= bound
            p[0] -= p[0] >> shift
            bit = 1
        while range_ < (1 << 24):
            if pos >= nbytes:
                used[0] = pos
                return CODEC_TRUNCATED
            range_ <<= 8
            code = (code << 8) | buf[pos]
            pos += 1
        out[i] = bit
        ctx = ((ctx << 1) | bit) & mask
    used[0] = pos
    return CODEC_OK


def _check_ac(int context_bits, int shift):
    if not 0 <= context_bits <= 20:
        raise ValueError(f"context_bits must be in 0..20, got {context_bits}")
    if not 1 <= shift <= 8:
        raise ValueError(f"adaptation shift must be in 1..8, got {shift}")


def ac_encode(bits, int context_bits=0, int shift=5):
    """Adaptive binary arithmetic (range) coding of a 0/1 vector: 11-bit probabilities,
    one per context of the previous ``context_bits`` bits, moved by 1/2^shift per bit
    (the LZMA range coder's arithmetic).  No bits: empty bytes."""
    _check_ac(context_bits, shift)
    cdef const uint8_t[::1] b = _as_bits(bits, "arithmetic coder")
    if b.shape[0] == 0:
        return b""
    cdef BitWriter bw
    cdef uint16_t* probs = <uint16_t*> malloc(sizeof(uint16_t) << context_bits)
    cdef Py_ssize_t i
    if probs == NULL:
        raise MemoryError("codec: out of memory")
    for i in range(1 << context_bits):
        probs[i] = 1024
    if bw_init(&bw, b.shape[0] // 8 + 16) != CODEC_OK:
        free(probs)
        raise MemoryError("codec: out of memory")
    with nogil:
        _ac_encode(&bw, b, probs, context_bits, shift)
    free(probs)
    return _finish(&bw)


def ac_decode(data, Py_ssize_t n, int context_bits=0, int shift=5):
    """Decode n bits written by :func:`ac_encode` with the same context_bits and shift."""
    _check_ac(context_bits, shift)
    _check_count(n, "arithmetic coder")
    cdef const uint8_t[::1] buf = _view(data)
    out_arr = np.zeros(n, dtype=np.uint8)
    if n == 0:
        return out_arr
    cdef uint8_t[::1] out = out_arr
    cdef uint16_t* probs = <uint16_t*> malloc(sizeof(uint16_t) << context_bits)
    cdef Py_ssize_t i, at = 0
    cdef size_t used = 0
    cdef int rc
    if probs == NULL:
        raise MemoryError("codec: out of memory")
    for i in range(1 << context_bits):
        probs[i] = 1024
    with nogil:
        rc = _ac_decode(_ptr(buf), buf.shape[0], out, probs, context_bits, shift, &at, &used)
    free(probs)
    if rc != CODEC_OK:
        _raise(rc, "arithmetic coder", at, n, used * 8, buf.shape[0] * 8)
    return out_arr
