"""Genome compression against a reference (Laud, Menghani & Keralapura, arXiv:2010.02286).

The chapter is ``notebooks/09_genome_codec``.  A person's variants (SNVs, insertions,
deletions) are stored as differences from the reference genome plus a catalogue of known
variants (dbSNP in the paper; a seeded synthetic catalogue here, :func:`synthetic_catalogue`):

* DNAZip (Christley et al. 2009), the baseline layout :data:`DNAZIP`: positions as gaps
  from the previous variant of the same type in VINT (8-bit words), known SNVs as a raw
  bitmap over the catalogue, novel SNVs as gap + 2-bit base, insertions as gap + length
  + sequence Huffman-coded in 4-mers, deletions as gap + length.
* The paper's three improvements, cumulative (:data:`STEPS`): (1) the SNV bitmap
  Huffman-coded in k-bit chunks, (2) VINT words of 5 bits, (3) deletions present in the
  catalogue as a chunk-Huffman bitvector.
* Beyond the paper (:data:`BEYOND`): Golomb-Rice gaps, an arithmetic-coded bitmap.

Everything that is coded goes through ``effdl_lib._codec`` (Cython, ``cython_ext/codec.pyx``).
:func:`encode` returns the container bytes and a per-stream byte account in which every
side table is counted; :func:`decode` inverts it given the same catalogue.

DNAZip ignores zygosity and phasing; ``Layout(zygosity=True)`` adds one bit per variant
(heterozygous / homozygous), phasing is never kept.  REF bases are implied by the
reference and are not stored.
"""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import lzma
import os
import struct
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from .. import _codec as codec
from ..claims import Claim, Measurement, Rule, Untestable, claims_catalog, ours, paper, related
from ..config import ChapterConfig, OneOf, Range, require
from ..stats import Estimate

SLUG = "09_genome_codec"
TITLE = "Genome compression against a reference"
ARXIV = "2010.02286"

BASES = "ACGT"
_BASE_CODE = {b: i for i, b in enumerate(BASES)}
_REF_OK = set("ACGTN")


class VCFError(ValueError):
    """A VCF record or file that cannot be read; the message names the file and line."""


class CatalogueMismatch(ValueError):
    """A stream is decoded against a different catalogue than it was encoded with."""


# ------------------------------------------------------------------ variants

@dataclass
class VariantSet:
    """One person's variants on one chromosome, split the DNAZip way.

    Positions are VCF POS (1-based; for indels the anchor base).  ``ins_seq`` holds the
    inserted bases (ALT without the anchor), ``del_len`` the number of deleted bases.
    ``*_hom`` says homozygous (True) or heterozygous; ``other`` holds records that are none
    of the three (symbolic, complex, non-ACGT), kept verbatim: (pos, ref, alt, hom).
    ``counts`` says what the reader met and how it handled it."""
    chrom: str
    snv_pos: np.ndarray
    snv_alt: np.ndarray
    snv_hom: np.ndarray
    ins_pos: np.ndarray
    ins_seq: list[str]
    ins_hom: np.ndarray
    del_pos: np.ndarray
    del_len: np.ndarray
    del_hom: np.ndarray
    other: list[tuple[int, str, str, bool]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_variants(self) -> int:
        return len(self.snv_pos) + len(self.ins_pos) + len(self.del_pos) + len(self.other)

    def records(self, zygosity: bool = True) -> list[tuple]:
        """The canonical sorted list (pos, kind, payload[, hom]): what a round trip keeps."""
        z = (lambda h: (bool(h),)) if zygosity else (lambda h: ())
        out = [(int(p), "snv", BASES[a], *z(h)) for p, a, h in
               zip(self.snv_pos, self.snv_alt, self.snv_hom)]
        out += [(int(p), "ins", s, *z(h)) for p, s, h in zip(self.ins_pos, self.ins_seq, self.ins_hom)]
        out += [(int(p), "del", int(n), *z(h)) for p, n, h in zip(self.del_pos, self.del_len, self.del_hom)]
        out += [(int(p), "other", f"{r}>{a}", *z(h)) for p, r, a, h in self.other]
        return sorted(out)

    def span(self) -> tuple[int, int]:
        allpos = np.concatenate([self.snv_pos, self.ins_pos, self.del_pos,
                                 np.array([o[0] for o in self.other], dtype=np.int64)])
        return (int(allpos.min()), int(allpos.max())) if allpos.size else (1, 1)

    def minimal_table(self) -> str:
        """The "minimal variant table" a user would keep: POS, REF, ALT per line (REF of
        an SNV as N: this layout does not know it without the reference)."""
        rows = [(int(p), "N", BASES[a]) for p, a in zip(self.snv_pos, self.snv_alt)]
        rows += [(int(p), "N", "N" + s) for p, s in zip(self.ins_pos, self.ins_seq)]
        rows += [(int(p), "N" * (int(n) + 1), "N") for p, n in zip(self.del_pos, self.del_len)]
        rows += [(int(p), r, a) for p, r, a, _ in self.other]
        rows.sort()
        return "".join(f"{p}\t{r}\t{a}\n" for p, r, a in rows)


def _classify(ref: str, alt: str) -> str:
    if alt.startswith("<") or "[" in alt or "]" in alt or alt in ("*", "."):
        return "symbolic"
    if set(ref) - set(BASES) or set(alt) - set(BASES):
        return "non_acgt"
    if len(ref) == 1 and len(alt) == 1:
        return "snv" if ref != alt else "complex"
    if len(ref) == 1 and alt[0] == ref:
        return "ins"
    if len(alt) == 1 and ref[0] == alt:
        return "del"
    return "complex"


def _check_allele(allele: str, where: str, ref: bool) -> None:
    if ref:
        if not allele or set(allele.upper()) - _REF_OK:
            raise VCFError(f"{where}: unknown REF allele {allele!r} (expected A, C, G, T or N)")
        return
    if allele.startswith("<") and allele.endswith(">") or allele in ("*", ".") \
            or "[" in allele or "]" in allele:
        return
    if not allele or set(allele.upper()) - _REF_OK:
        raise VCFError(f"{where}: unknown ALT allele {allele!r} (expected bases ACGTN, a "
                       f"symbolic <...> allele, '*' or a breakend)")


def _count_header_lines(path: str) -> int:
    """Lines starting with '#' at the top of a plain or gzip/BGZF VCF (as far as readable)."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    n = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            for line in fh:
                if not line.startswith(b"#"):
                    break
                n += 1
    except (OSError, EOFError):
        pass
    return n


def _readable_lines(path: str) -> tuple[int, str]:
    """How many whole lines a gzip/BGZF file yields before it breaks, and why it broke
    ("" when it reads to the end)."""
    n = 0
    try:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    return n, "the last line is cut off"
                n += 1
    except (OSError, EOFError, zlib.error) as exc:
        return n, f"{type(exc).__name__}: {exc}"
    return n, ""


def read_vcf(path: str | os.PathLike, sample: str | int = 0, max_records: int = 0,
             chrom: str | None = None) -> VariantSet:
    """Read one sample's variants with pysam's VariantFile.

    Rules (each counted in ``counts``, nothing skipped silently): hom-ref and missing
    genotypes carry no variant of this person (counted, left out); a multi-allelic site
    gives one variant per ALT allele in the genotype; symbolic, complex and non-ACGT
    alleles go to the verbatim ``other`` stream.  A malformed record, an unknown allele,
    a genotype naming a missing allele, unsorted positions or a truncated file stop with
    a :class:`VCFError` naming the file and line.  ``max_records`` > 0 reads only that
    many records (a region for quick runs)."""
    import pysam
    path = str(path)
    pysam.set_verbosity(0)
    try:
        vf = pysam.VariantFile(path)
    except (ValueError, OSError) as exc:
        lines, why = _readable_lines(path)
        if why:
            raise VCFError(f"{path}: line {lines + 1}: the compressed file is truncated or "
                           f"corrupt ({why}); {lines} complete lines are readable") from exc
        raise VCFError(f"{path}: cannot read the VCF header ({exc}); the file is corrupt or "
                       f"not a VCF") from exc
    with vf:
        header_lines = _count_header_lines(path)
        samples = list(vf.header.samples)
        if not samples:
            raise VCFError(f"{path}: the VCF has no sample columns")
        if isinstance(sample, int):
            if not 0 <= sample < len(samples):
                raise VCFError(f"{path}: sample index {sample} out of range ({len(samples)} samples)")
            sample = samples[sample]
        elif sample not in samples:
            raise VCFError(f"{path}: no sample {sample!r}; samples: {samples[:10]}")
        counts = dict.fromkeys(["records", "snv", "ins", "del", "other", "hom_ref",
                                "missing_gt", "multiallelic", "symbolic", "complex",
                                "non_acgt"], 0)
        snv, ins, dele, other = [], [], [], []
        it = iter(vf)
        seen_chrom, last_pos = chrom, 0
        n = 0
        while True:
            line = header_lines + n + 1
            where = f"{path}: line {line}"
            try:
                rec = next(it)
            except StopIteration:
                break
            except (OSError, ValueError) as exc:
                raise VCFError(f"{where}: cannot parse the record ({exc}); a malformed field "
                               f"(bad POS?) or a truncated file") from exc
            n += 1
            counts["records"] += 1
            if seen_chrom is None:
                seen_chrom = rec.chrom
            if rec.chrom != seen_chrom:
                raise VCFError(f"{where}: chromosome {rec.chrom!r} after {seen_chrom!r}; "
                               f"one chromosome per VariantSet (pass chrom=...)")
            if rec.pos < 1 or rec.pos < last_pos:
                raise VCFError(f"{where}: position {rec.pos} is invalid or out of order "
                               f"(previous {last_pos})")
            last_pos = rec.pos
            ref, alts = rec.ref, tuple(rec.alts or ())
            _check_allele(ref, where, True)
            for a in alts:
                _check_allele(a, where, False)
            call = rec.samples[sample]
            gt = call.get("GT") if "GT" in rec.format else None
            if gt is None or any(g is None for g in gt):
                raw = str(rec).rstrip("\n").split("\t")[9 + samples.index(sample)].split(":")[0]
                bad = [t for t in raw.replace("|", "/").split("/") if t != "."]
                if gt is not None and bad and any(not t.isdigit() or int(t) > len(alts) for t in bad):
                    raise VCFError(f"{where}: genotype {raw!r} names an allele that is not in "
                                   f"REF/ALT ({ref}, {','.join(alts)})")
                counts["missing_gt"] += 1
                continue
            if any(g > len(alts) for g in gt):
                raise VCFError(f"{where}: genotype {gt} names an allele that is not in "
                               f"REF/ALT ({ref}, {','.join(alts)})")
            carried = sorted({g for g in gt if g > 0})
            if not carried:
                counts["hom_ref"] += 1
                continue
            if len(alts) > 1:
                counts["multiallelic"] += 1
            for g in carried:
                alt = alts[g - 1]
                hom = all(x == g for x in gt)
                kind = _classify(ref.upper(), alt.upper())
                if kind == "snv":
                    snv.append((rec.pos, _BASE_CODE[alt.upper()], hom))
                elif kind == "ins":
                    ins.append((rec.pos, alt.upper()[1:], hom))
                elif kind == "del":
                    dele.append((rec.pos, len(ref) - 1, hom))
                else:
                    counts[kind] += 1
                    kind = "other"
                    other.append((rec.pos, ref, alt, hom))
                counts[kind] += 1
            if max_records and n >= max_records:
                break
    snv.sort(); ins.sort(); dele.sort(); other.sort()
    a = lambda rows, i, dt: np.array([r[i] for r in rows], dtype=dt)  # noqa: E731
    return VariantSet(str(seen_chrom), a(snv, 0, np.int64), a(snv, 1, np.uint8), a(snv, 2, bool),
                      a(ins, 0, np.int64), [r[1] for r in ins], a(ins, 2, bool),
                      a(dele, 0, np.int64), a(dele, 1, np.int64), a(dele, 2, bool),
                      other, counts)


# ------------------------------------------------------------------ synthetic catalogue

@dataclass(frozen=True)
class Catalogue:
    """Known variants: SNVs (pos, alt base) and deletions (pos, length), sorted, unique."""
    snv_pos: np.ndarray
    snv_alt: np.ndarray
    del_pos: np.ndarray
    del_len: np.ndarray

    @property
    def snv_keys(self) -> np.ndarray:
        return self.snv_pos.astype(np.int64) * 4 + self.snv_alt

    @property
    def del_keys(self) -> np.ndarray:
        return (self.del_pos.astype(np.int64) << 24) | self.del_len

    def fingerprint(self) -> int:
        """CRC32 of the catalogue: a stream decoded against another catalogue fails."""
        return zlib.crc32(self.snv_keys.tobytes() + b"|" + self.del_keys.tobytes())

    def stored_bytes(self) -> int:
        """What a shared catalogue would cost if stored naively (not counted per person)."""
        return 5 * len(self.snv_pos) + 6 * len(self.del_pos)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique for int64 keys by sort + neighbour compare (NumPy 2.4's hash-based
    unique is slow on ten million keys)."""
    x = np.sort(x, kind="stable")
    return x[np.r_[True, x[1:] != x[:-1]]] if x.size else x


def synthetic_catalogue(vs: VariantSet, p_known: float = 0.999, snv_density_per_kb: float = 3.1,
                        del_share: float = 0.1, del_density_per_kb: float = 0.3,
                        seed: int = 0, span: tuple[int, int] | None = None,
                        background: str = "local", window: int = 100_000) -> Catalogue:
    """A seeded stand-in for dbSNP on this chromosome: each of the person's SNVs is in it
    with probability ``p_known``, each deletion with probability ``del_share``, plus a
    background of other people's sites spread uniformly over ``span`` (default: the
    person's first to last variant) at the given densities per kb (background SNVs get
    a random ALT base, background deletions the person's length distribution).

    ``background`` "uniform" spreads other people's sites evenly; "local" (default) puts
    each one within ``window`` bp of a random variant of this person, so the catalogue's
    density follows the regional variant density as dbSNP's does (diverse regions are
    dense in both) without sharing the person's exact sites."""
    if background not in ("uniform", "local"):
        raise ValueError(f"background must be uniform or local, got {background!r}")
    for name, v in (("p_known", p_known), ("del_share", del_share)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    for name, v in (("snv_density_per_kb", snv_density_per_kb),
                    ("del_density_per_kb", del_density_per_kb)):
        if not v >= 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    rng = np.random.default_rng(seed)
    lo, hi = span or vs.span()
    kb = max(hi - lo + 1, 1) / 1000.0
    keep = rng.random(len(vs.snv_pos)) < p_known
    n_bg = rng.poisson(snv_density_per_kb * kb)
    anchors = np.concatenate([vs.snv_pos, vs.ins_pos, vs.del_pos]).astype(np.int64)

    def place(n: int) -> np.ndarray:
        if background == "uniform" or anchors.size == 0:
            return rng.integers(lo, hi + 1, n)
        near = anchors[rng.integers(0, anchors.size, n)] + rng.integers(-window, window + 1, n)
        return np.clip(near, lo, hi)
    bg_pos = place(n_bg)
    bg_alt = rng.integers(0, 4, n_bg)
    keys = _sorted_unique(np.concatenate([vs.snv_pos[keep].astype(np.int64) * 4 + vs.snv_alt[keep],
                                     bg_pos.astype(np.int64) * 4 + bg_alt]))
    keep_d = rng.random(len(vs.del_pos)) < del_share
    n_bgd = rng.poisson(del_density_per_kb * kb)
    pool = vs.del_len if len(vs.del_len) else np.array([1])
    bgd_pos = place(n_bgd)
    bgd_len = rng.choice(pool, n_bgd)
    dkeys = _sorted_unique(np.concatenate([(vs.del_pos[keep_d].astype(np.int64) << 24) | vs.del_len[keep_d],
                                      (bgd_pos.astype(np.int64) << 24) | np.minimum(bgd_len, (1 << 24) - 1)]))
    return Catalogue(keys // 4, (keys % 4).astype(np.uint8), dkeys >> 24, dkeys & ((1 << 24) - 1))


# ------------------------------------------------------------------ layouts

@dataclass(frozen=True)
class Layout:
    """How each stream is coded.  ``bitmap``: raw | huffman (k-bit chunks) | ac
    (adaptive arithmetic, ``ac_context`` previous bits as context); ``gaps``: vint | rice
    (k chosen per stream, stored in the header); ``del_bitvector``: deletions in the
    catalogue as a chunk-Huffman bitvector (chunk ``k_del``), the rest as gap + length."""
    name: str = "DNAZip"
    vint_w: int = 8
    bitmap: str = "raw"
    k_bitmap: int = 6
    ac_context: int = 8
    del_bitvector: bool = False
    k_del: int = 7
    gaps: str = "vint"
    zygosity: bool = False

    def __post_init__(self):
        if not 2 <= self.vint_w <= 16:
            raise ValueError(f"vint_w must be in 2..16, got {self.vint_w}")
        if self.bitmap not in ("raw", "huffman", "ac"):
            raise ValueError(f"bitmap must be raw, huffman or ac, got {self.bitmap!r}")
        if self.gaps not in ("vint", "rice"):
            raise ValueError(f"gaps must be vint or rice, got {self.gaps!r}")
        for name in ("k_bitmap", "k_del"):
            if not 1 <= getattr(self, name) <= 12:
                raise ValueError(f"{name} must be in 1..12, got {getattr(self, name)}")
        if not 0 <= self.ac_context <= 16:
            raise ValueError(f"ac_context must be in 0..16, got {self.ac_context}")


DNAZIP = Layout("DNAZip")
STEPS = (
    DNAZIP,
    dataclasses.replace(DNAZIP, name="1. bitmap Huffman in k-bit chunks", bitmap="huffman"),
    dataclasses.replace(DNAZIP, name="2. VINT word 5 bits", bitmap="huffman", vint_w=5),
    dataclasses.replace(DNAZIP, name="3. deletions as a catalogue bitvector", bitmap="huffman",
                        vint_w=5, del_bitvector=True),
)
BEYOND = dataclasses.replace(STEPS[-1], name="beyond: Rice gaps + arithmetic-coded bitmap",
                             gaps="rice", bitmap="ac")

_BITMAP_CODES = {"raw": 0, "huffman": 1, "ac": 2}
_GAP_CODES = {"vint": 0, "rice": 1}
MAGIC = b"DZ9"
STREAMS = ("header", "snv_bitmap", "snv_novel_pos", "snv_novel_base", "ins_pos", "ins_len",
           "ins_seq", "ins_tail", "del_bitvector", "del_pos", "del_len", "other", "zygosity")
#: streams whose integers are VINT-coded in every layout (gap streams only when gaps=vint)
VINT_STREAMS = ("snv_novel_pos", "ins_pos", "ins_len", "del_pos", "del_len")


@dataclass
class Encoded:
    blob: bytes
    streams: dict[str, int]          # bytes per stream (sums to len(blob))
    layout: Layout
    tables: dict[str, int]           # in-band Huffman table bytes inside those streams

    @property
    def total(self) -> int:
        return len(self.blob)


def best_rice_k(values: np.ndarray) -> int:
    """The Golomb-Rice parameter with the fewest bits for these values (ties: smaller k)."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return 0
    best, best_bits = 0, None
    for k in range(0, 40):
        q = v >> np.uint64(k)
        bits = int(np.where(q < codec.RICE_ESCAPE_QUOTIENT, q.astype(np.int64) + 1 + k, 96).sum())
        if best_bits is None or bits < best_bits:
            best, best_bits = k, bits
    return best


def gaps_of(pos: np.ndarray) -> np.ndarray:
    """Gaps from the previous position of the same stream (the first from 0)."""
    p = np.asarray(pos, dtype=np.int64)
    return np.diff(p, prepend=0).astype(np.uint64) if p.size else np.zeros(0, np.uint64)


def _encode_gaps(pos, layout: Layout) -> tuple[bytes, int]:
    g = gaps_of(pos)
    if layout.gaps == "rice":
        k = best_rice_k(g)
        return codec.rice_encode(g, k), k
    return codec.vint_encode(g, layout.vint_w), 0


def _decode_gaps(data: bytes, n: int, layout: Layout, k: int) -> np.ndarray:
    g = codec.rice_decode(data, n, k) if layout.gaps == "rice" else codec.vint_decode(data, n, layout.vint_w)
    return np.cumsum(g.astype(np.int64))


def _encode_bits(bits: np.ndarray, kind: str, k: int, ctx: int) -> bytes:
    if kind == "raw":
        return np.packbits(bits.astype(np.uint8)).tobytes() if len(bits) else b""
    if kind == "huffman":
        return codec.chunk_huffman_encode(bits, k)
    return codec.ac_encode(bits, ctx)


def _decode_bits(data: bytes, n: int, kind: str, k: int, ctx: int) -> np.ndarray:
    if kind == "raw":
        if len(data) < (n + 7) // 8:
            raise codec.TruncatedStreamError(f"raw bitmap: {n} bits need {(n + 7) // 8} bytes, "
                                             f"the stream has {len(data)}")
        return np.unpackbits(np.frombuffer(data, np.uint8))[:n] if n else np.zeros(0, np.uint8)
    if kind == "huffman":
        return codec.chunk_huffman_decode(data, n, k)
    return codec.ac_decode(data, n, ctx)


def _kmers(seqs: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    allb = "".join(seqs)
    codes = np.frombuffer(allb.encode(), np.uint8) if allb else np.zeros(0, np.uint8)
    lut = np.zeros(256, np.uint8)
    for b, i in _BASE_CODE.items():
        lut[ord(b)] = i
    c = lut[codes]
    nfull = len(c) // 4
    km = (c[:4 * nfull].reshape(nfull, 4).astype(np.uint32) * np.array([64, 16, 4, 1], np.uint32)).sum(1)
    return km.astype(np.uint32), c[4 * nfull:], len(c)


def _other_bytes(other, layout: Layout) -> bytes:
    out = bytearray()
    prev = 0
    for p, r, a, _ in other:
        rb, ab = r.encode(), a.encode()
        out += codec.vint_encode([p - prev, len(rb), len(ab)], 8) + rb + ab
        prev = p
    return bytes(out)


def _parse_other(data: bytes, n: int) -> list[tuple[int, str, str]]:
    out, i, prev = [], 0, 0
    for j in range(n):
        vals = []
        for _ in range(3):          # one VINT (w=8) each: read byte by byte
            start = i
            while True:
                if i >= len(data):
                    raise codec.TruncatedStreamError(f"other stream: truncated in record {j} of {n}")
                i += 1
                if not data[i - 1] & 0x80:
                    break
            vals.append(int(codec.vint_decode(data[start:i], 1, 8)[0]))
        gap, lr, la = vals
        if i + lr + la > len(data):
            raise codec.TruncatedStreamError(f"other stream: truncated in record {j} of {n}")
        r, a = data[i:i + lr].decode(), data[i + lr:i + lr + la].decode()
        i += lr + la
        prev += gap
        out.append((prev, r, a))
    return out


def encode(vs: VariantSet, cat: Catalogue, layout: Layout = DNAZIP) -> Encoded:
    """Encode a VariantSet against a catalogue; every byte of the result is in a stream."""
    L = layout
    s: dict[str, bytes] = {}
    tables: dict[str, int] = {}
    # SNVs: known ones as a bitmap over the catalogue, the rest as gap + 2-bit base
    keys = vs.snv_pos.astype(np.int64) * 4 + vs.snv_alt
    cat_keys = cat.snv_keys
    idx = np.searchsorted(cat_keys, keys)
    known = (idx < len(cat_keys)) & (cat_keys[np.minimum(idx, max(len(cat_keys) - 1, 0))] == keys) \
        if len(cat_keys) else np.zeros(len(keys), bool)
    bitmap = np.zeros(len(cat_keys), np.uint8)
    bitmap[idx[known]] = 1
    s["snv_bitmap"] = _encode_bits(bitmap, L.bitmap, L.k_bitmap, L.ac_context)
    if L.bitmap == "huffman" and len(bitmap):
        tables["snv_bitmap"] = codec.huffman_table_bytes(L.k_bitmap)
    novel = ~known
    s["snv_novel_pos"], k_snv = _encode_gaps(vs.snv_pos[novel], L)
    s["snv_novel_base"] = codec.pack_bases(vs.snv_alt[novel])
    # insertions: gap, length - 1, sequence in 4-mers (Huffman) + up to 3 tail bases
    s["ins_pos"], k_ins = _encode_gaps(vs.ins_pos, L)
    lens = np.array([len(q) for q in vs.ins_seq], dtype=np.int64)
    if (lens < 1).any():
        raise ValueError("an insertion must insert at least one base")
    s["ins_len"] = codec.vint_encode(lens - 1, L.vint_w)
    km, tail, nbases = _kmers(vs.ins_seq)
    s["ins_seq"] = codec.huffman_encode(km, 8)
    if len(km):
        tables["ins_seq"] = codec.huffman_table_bytes(8)
    s["ins_tail"] = codec.pack_bases(tail)
    # deletions: optionally those in the catalogue as a bitvector, the rest gap + length
    dkeys = (vs.del_pos.astype(np.int64) << 24) | vs.del_len
    dknown = np.zeros(len(dkeys), bool)
    if L.del_bitvector:
        ck = cat.del_keys
        didx = np.searchsorted(ck, dkeys)
        if len(ck):
            dknown = (didx < len(ck)) & (ck[np.minimum(didx, len(ck) - 1)] == dkeys)
        dbits = np.zeros(len(ck), np.uint8)
        dbits[didx[dknown]] = 1
        s["del_bitvector"] = codec.chunk_huffman_encode(dbits, L.k_del)
        if len(ck):
            tables["del_bitvector"] = codec.huffman_table_bytes(L.k_del)
    else:
        s["del_bitvector"] = b""
    rest = ~dknown
    s["del_pos"], k_del = _encode_gaps(vs.del_pos[rest], L)
    if (vs.del_len < 1).any():
        raise ValueError("a deletion must delete at least one base")
    s["del_len"] = codec.vint_encode(vs.del_len[rest] - 1, L.vint_w)
    s["other"] = _other_bytes(vs.other, L)
    if L.zygosity:
        hom = np.concatenate([vs.snv_hom[known], vs.snv_hom[novel], vs.ins_hom, vs.del_hom[dknown],
                              vs.del_hom[rest], np.array([o[3] for o in vs.other], bool)])
        s["zygosity"] = np.packbits(hom.astype(np.uint8)).tobytes() if len(hom) else b""
    else:
        s["zygosity"] = b""
    counts = [len(cat_keys), len(cat.del_keys), int(novel.sum()), len(vs.ins_pos), nbases,
              int(rest.sum()), len(vs.other), k_snv, k_ins, k_del]
    body = [s[name] for name in STREAMS[1:]]
    head = (MAGIC + bytes([L.vint_w, _BITMAP_CODES[L.bitmap], L.k_bitmap, L.ac_context,
                           int(L.del_bitvector), L.k_del, _GAP_CODES[L.gaps], int(L.zygosity)])
            + struct.pack(">I", cat.fingerprint())
            + codec.vint_encode(counts + [len(b) for b in body], 8))
    streams = {"header": len(head), **{n: len(b) for n, b in zip(STREAMS[1:], body)}}
    return Encoded(head + b"".join(body), streams, L, tables)


def decode(blob: bytes, cat: Catalogue, chrom: str = "") -> VariantSet:
    """Invert :func:`encode` (the same catalogue is needed); zygosity comes back only if
    the layout stored it (else every variant reads heterozygous)."""
    if len(blob) < 16 or blob[:3] != MAGIC:
        raise codec.CorruptStreamError("not a genome-codec stream (bad magic or too short)")
    w, bm, kb, ctx, dbv, kd, gp, zyg = blob[3:11]
    inv_b = {v: k for k, v in _BITMAP_CODES.items()}
    inv_g = {v: k for k, v in _GAP_CODES.items()}
    if bm not in inv_b or gp not in inv_g:
        raise codec.CorruptStreamError("genome-codec header: unknown stream coder")
    L = Layout("decoded", w, inv_b[bm], kb, ctx, bool(dbv), kd, inv_g[gp], bool(zyg))
    (fp,) = struct.unpack(">I", blob[11:15])
    if fp != cat.fingerprint():
        raise CatalogueMismatch("the stream was encoded against a different catalogue "
                                f"(fingerprint {fp:08x}, this one {cat.fingerprint():08x})")
    nfields = 10 + len(STREAMS) - 1
    # the header's VINTs (w = 8) end at the nfields-th byte without a continuation bit
    i, seen = 15, 0
    while seen < nfields:
        if i >= len(blob):
            raise codec.TruncatedStreamError("genome-codec header truncated")
        seen += not (blob[i] & 0x80)
        i += 1
    vals = [int(x) for x in codec.vint_decode(blob[15:i], nfields, 8)]
    (n_cat, n_catd, n_novel, n_ins, nbases, n_drest, n_other, k_snv, k_ins, k_del) = vals[:10]
    if n_cat != len(cat.snv_pos) or n_catd != len(cat.del_pos):
        raise CatalogueMismatch("catalogue sizes differ from the encoder's")
    sizes = vals[10:]
    if i + sum(sizes) > len(blob):
        raise codec.TruncatedStreamError(f"genome-codec stream truncated: the header promises "
                                         f"{i + sum(sizes)} bytes, the stream has {len(blob)}")
    s, off = {}, i
    for name, n in zip(STREAMS[1:], sizes):
        s[name] = blob[off:off + n]
        off += n
    bitmap = _decode_bits(s["snv_bitmap"], n_cat, L.bitmap, L.k_bitmap, L.ac_context).astype(bool)
    k_pos, k_alt = cat.snv_pos[bitmap], cat.snv_alt[bitmap]
    n_pos = _decode_gaps(s["snv_novel_pos"], n_novel, L, k_snv)
    n_alt = codec.unpack_bases(s["snv_novel_base"], n_novel)
    ins_pos = _decode_gaps(s["ins_pos"], n_ins, L, k_ins)
    ins_len = codec.vint_decode(s["ins_len"], n_ins, L.vint_w).astype(np.int64) + 1
    if int(ins_len.sum()) != nbases:
        raise codec.CorruptStreamError("insertion lengths do not add up to the stored base count")
    km = codec.huffman_decode(s["ins_seq"], nbases // 4, 8)
    tail = codec.unpack_bases(s["ins_tail"], nbases % 4)
    codes = np.concatenate([((km[:, None] >> np.array([6, 4, 2, 0], np.uint32)) & 3).reshape(-1).astype(np.uint8), tail])
    allb = np.frombuffer(b"ACGT", np.uint8)[codes].tobytes().decode()
    ends = np.cumsum(ins_len)
    ins_seq = [allb[e - n:e] for e, n in zip(ends, ins_len)]
    if L.del_bitvector:
        dbits = codec.chunk_huffman_decode(s["del_bitvector"], n_catd, L.k_del).astype(bool)
    else:
        dbits = np.zeros(n_catd, bool)
    dk_pos, dk_len = cat.del_pos[dbits], cat.del_len[dbits]
    dr_pos = _decode_gaps(s["del_pos"], n_drest, L, k_del)
    dr_len = codec.vint_decode(s["del_len"], n_drest, L.vint_w).astype(np.int64) + 1
    other = _parse_other(s["other"], n_other)
    n_all = len(k_pos) + n_novel + n_ins + len(dk_pos) + n_drest + n_other
    if L.zygosity:
        if len(s["zygosity"]) < (n_all + 7) // 8:
            raise codec.TruncatedStreamError("zygosity stream truncated")
        hom = np.unpackbits(np.frombuffer(s["zygosity"], np.uint8))[:n_all].astype(bool)
    else:
        hom = np.zeros(n_all, bool)
    cuts = np.cumsum([len(k_pos), n_novel, n_ins, len(dk_pos), n_drest])
    hk, hn, hi, hdk, hdr, ho = np.split(hom, cuts)
    snv_pos = np.concatenate([k_pos, n_pos]).astype(np.int64)
    snv_alt = np.concatenate([k_alt, n_alt]).astype(np.uint8)
    snv_hom = np.concatenate([hk, hn])
    o1 = np.lexsort((snv_alt, snv_pos))
    del_pos = np.concatenate([dk_pos, dr_pos]).astype(np.int64)
    del_len = np.concatenate([dk_len, dr_len]).astype(np.int64)
    del_hom = np.concatenate([hdk, hdr])
    o2 = np.lexsort((del_len, del_pos))
    return VariantSet(chrom, snv_pos[o1], snv_alt[o1], snv_hom[o1], ins_pos.astype(np.int64),
                      ins_seq, hi, del_pos[o2], del_len[o2], del_hom[o2],
                      [(p, r, a, bool(h)) for (p, r, a), h in zip(other, ho)])


def mismatches(a: VariantSet, b: VariantSet, zygosity: bool = True) -> int:
    """Records in one set and not the other (a multiset difference; 0 means equal)."""
    same = (np.array_equal(a.snv_pos, b.snv_pos) and np.array_equal(a.snv_alt, b.snv_alt)
            and np.array_equal(a.ins_pos, b.ins_pos) and a.ins_seq == b.ins_seq
            and np.array_equal(a.del_pos, b.del_pos) and np.array_equal(a.del_len, b.del_len)
            and [o[:3] for o in a.other] == [o[:3] for o in b.other]
            and (not zygosity or (np.array_equal(a.snv_hom, b.snv_hom)
                                  and np.array_equal(a.ins_hom, b.ins_hom)
                                  and np.array_equal(a.del_hom, b.del_hom)
                                  and [o[3] for o in a.other] == [o[3] for o in b.other])))
    if same:
        return 0
    ca, cb = Counter(a.records(zygosity)), Counter(b.records(zygosity))
    return sum(((ca - cb) + (cb - ca)).values())


def roundtrip_mismatches(vs: VariantSet, cat: Catalogue, layout: Layout) -> int:
    """Number of records that differ after encode -> decode (0 means lossless)."""
    back = decode(encode(vs, cat, layout).blob, cat, vs.chrom)
    return mismatches(vs, back, layout.zygosity)


# ------------------------------------------------------------------ against a real reference

def with_reference(vs: VariantSet, fasta_path: str | os.PathLike, chrom: str | None = None):
    """The VCF alleles (pos, REF, ALT) of a VariantSet, REF bases taken from the reference
    FASTA (pysam.FastaFile): what the layouts leave out is recovered from the reference."""
    import pysam
    chrom = chrom or vs.chrom
    with pysam.FastaFile(str(fasta_path)) as fa:
        get = lambda a, b: fa.fetch(chrom, a, b).upper()  # noqa: E731  (0-based, end-exclusive)
        out = [(int(p), get(p - 1, p), BASES[a]) for p, a in zip(vs.snv_pos, vs.snv_alt)]
        for p, q in zip(vs.ins_pos, vs.ins_seq):
            r = get(p - 1, p)
            out.append((int(p), r, r + q))
        for p, n in zip(vs.del_pos, vs.del_len):
            r = get(p - 1, p + n)
            out.append((int(p), r, r[0]))
    out += [(int(p), r.upper(), a.upper()) for p, r, a, _ in vs.other]
    return sorted(out)


def vcf_alleles(path: str | os.PathLike, sample: int = 0) -> list[tuple[int, str, str]]:
    """(pos, REF, ALT) of every ALT allele the sample carries, straight from pysam."""
    import pysam
    out = []
    with pysam.VariantFile(str(path)) as vf:
        for rec in vf:
            gt = rec.samples[sample].get("GT") or ()
            for gi in sorted({x for x in gt if x}):
                out.append((rec.pos, rec.ref.upper(), rec.alts[gi - 1].upper()))
    return sorted(out)


def reference_roundtrip(vcf_path, fasta_path, layout: Layout = BEYOND, seed: int = 0) -> dict[str, Any]:
    """Read a VCF, encode against a synthetic catalogue, decode, restore REF from the
    reference; compare the alleles with the VCF's own."""
    vs = read_vcf(vcf_path)
    cat = synthetic_catalogue(vs, 0.9, 3.1, 0.1, 0.3, seed)
    e = encode(vs, cat, layout)
    back = decode(e.blob, cat, vs.chrom)
    got, want = with_reference(back, fasta_path), vcf_alleles(vcf_path)
    return {"variants": len(want), "bytes": e.total, "equal": got == want,
            "differing": len(set(got) ^ set(want))}


# ------------------------------------------------------------------ a Watson-scale synthetic genome

#: Watson against dbSNP in the paper: the DNAZip bitmaps covered 9,643,218 catalogue entries
WATSON_CATALOGUE = 9_643_218
WATSON_SNVS = 3_300_000          # about 3.3M SNPs [the paper's notes; recalled]


def synthetic_genome(template: VariantSet, n_snv: int = WATSON_SNVS, seed: int = 0) -> VariantSet:
    """A seeded whole-genome-sized VariantSet on one coordinate line: gaps, ALT bases,
    inserted sequences and deletion lengths resampled from ``template`` (a real chr21),
    indel counts in the template's proportion to SNVs, zygosity homozygous with
    probability 0.4.  Not Watson: a way to see the layouts at the paper's scale."""
    if len(template.snv_pos) < 2:
        raise ValueError("the template needs at least two SNVs")
    rng = np.random.default_rng(seed)

    def positions(p, n):
        gp = gaps_of(p)[1:].astype(np.int64)
        gp = gp[gp > 0] if (gp > 0).any() else np.array([1000])
        return np.cumsum(rng.choice(gp, n)) + 1
    n_ins = round(len(template.ins_pos) / len(template.snv_pos) * n_snv)
    n_del = round(len(template.del_pos) / len(template.snv_pos) * n_snv)
    ins_pick = rng.integers(0, max(len(template.ins_seq), 1), n_ins)
    return VariantSet(
        "synthetic", positions(template.snv_pos, n_snv),
        rng.choice(template.snv_alt, n_snv).astype(np.uint8), rng.random(n_snv) < 0.4,
        positions(template.ins_pos, n_ins) if n_ins else np.zeros(0, np.int64),
        [template.ins_seq[i] for i in ins_pick] if n_ins else [], rng.random(n_ins) < 0.4,
        positions(template.del_pos, n_del) if n_del else np.zeros(0, np.int64),
        rng.choice(template.del_len, n_del).astype(np.int64) if n_del else np.zeros(0, np.int64),
        rng.random(n_del) < 0.4)


def watson_scale(template: VariantSet, n_snv: int, p_known: float = 0.82, seed: int = 0,
                 layouts_: Iterable[Layout] = (*STEPS, BEYOND)):
    """The paper's step table on a synthetic genome of ``n_snv`` SNVs whose catalogue
    has Watson's 9,643,218 entries scaled by n_snv / 3.3M (background density solved for
    it).  Returns (table, info)."""
    import pandas as pd
    layouts_ = list(layouts_)
    vs = synthetic_genome(template, n_snv, seed)
    lo, hi = vs.span()
    target = WATSON_CATALOGUE * n_snv / WATSON_SNVS
    density = max(target - p_known * n_snv, 0.0) / ((hi - lo + 1) / 1000)
    cat = synthetic_catalogue(vs, p_known, density, 0.1, 0.3, seed)
    rows, base = [], None
    paper = {p["step"]: p for p in PAPER_STEPS}
    for L in layouts_:
        e = encode(vs, cat, L)
        base = base or e.total
        rows.append({"step": L.name, "ours bytes": e.total, "ours % of DNAZip": 100 * e.total / base,
                     "paper bytes": paper.get(L.name, {}).get("paper bytes"),
                     "paper % of DNAZip": (100 * paper[L.name]["paper bytes"] / PAPER_STEPS[0]["paper bytes"]
                                           if paper.get(L.name, {}).get("paper bytes") else None)})
    back = decode(encode(vs, cat, layouts_[-1]).blob, cat)
    info = {"snvs": len(vs.snv_pos), "insertions": len(vs.ins_pos), "deletions": len(vs.del_pos),
            "span_gb": (hi - lo) / 1e9, "catalogue_snvs": len(cat.snv_pos),
            "background_per_kb": density, "mismatches": mismatches(vs, back, False)}
    return pd.DataFrame(rows).set_index("step"), info


# ------------------------------------------------------------------ tables and sweeps

def steps_table(vs: VariantSet, cat: Catalogue, layouts: Iterable[Layout] = STEPS):
    """Per-stream bytes of each layout (rows: streams + total), cumulative steps."""
    import pandas as pd
    cols = {}
    for L in layouts:
        e = encode(vs, cat, L)
        cols[L.name] = {**e.streams, "total": e.total}
    return pd.DataFrame(cols)


#: the paper's per-step table for Watson (bytes; steps 2 and 3 as the paper states them)
PAPER_STEPS = [
    {"step": "DNAZip", "paper bytes": 4_198_717, "paper saving": "-", "paper saving %": None},
    {"step": "1. bitmap Huffman in k-bit chunks", "paper bytes": 3_889_100,
     "paper saving": "309,617 B", "paper saving %": 7.37},
    {"step": "2. VINT word 5 bits", "paper bytes": None, "paper saving": "about 129 KiB",
     "paper saving %": 129 * 1024 / 4_198_717 * 100},
    {"step": "3. deletions as a catalogue bitvector", "paper bytes": 3_736_918,
     "paper saving": "about 20 KB", "paper saving %": 20_000 / 4_198_717 * 100},
]
PAPER_TOTAL_PCT = 11.0
PAPER_VINT_KB = {2: 3384, 3: 2666, 4: 2484, 5: 2448, 6: 2481, 7: 2515, 8: 2574}


def paper_table(vs: VariantSet, cat: Catalogue):
    """The paper's table layout: our bytes and savings beside the paper's Watson numbers."""
    import pandas as pd
    rows, prev, base = [], None, None
    for L, p in zip(STEPS, PAPER_STEPS):
        t = encode(vs, cat, L).total
        base = base or t
        rows.append({"step": L.name, "ours bytes": t,
                     "ours saving B": None if prev is None else prev - t,
                     "ours saving %": None if prev is None else 100 * (prev - t) / base,
                     **{k: v for k, v in p.items() if k != "step"}})
        prev = t
    rows.append({"step": "total", "ours bytes": prev, "ours saving B": base - prev,
                 "ours saving %": 100 * (base - prev) / base, "paper bytes": 3_736_918,
                 "paper saving": "461,799 B", "paper saving %": PAPER_TOTAL_PCT})
    return pd.DataFrame(rows).set_index("step")


def vint_sweep(vs: VariantSet, cat: Catalogue, widths: Iterable[int] = range(2, 11)):
    """Bytes of the VINT-coded streams for each word size w (the U-curve): all VINT streams
    together (as the paper's curve), and SNV gaps alone."""
    import pandas as pd
    rows = []
    for w in widths:
        e = encode(vs, cat, dataclasses.replace(STEPS[1], vint_w=w))
        rows.append({"w": w, "all VINT streams": sum(e.streams[n] for n in VINT_STREAMS),
                     "SNV gaps": e.streams["snv_novel_pos"], "total": e.total})
    return pd.DataFrame(rows).set_index("w")


def chunk_sweep(bits: np.ndarray, ks: Iterable[int] = range(1, 13), ac_contexts=(0, 4, 8, 12)):
    """Bytes of a bitvector: raw, chunk Huffman for each k (table included), arithmetic."""
    import pandas as pd
    rows = [{"coder": "raw", "k": 0, "bytes": (len(bits) + 7) // 8}]
    for k in ks:
        rows.append({"coder": "chunk Huffman", "k": k, "bytes": len(codec.chunk_huffman_encode(bits, k)),
                     "table bytes": codec.huffman_table_bytes(k)})
    for c in ac_contexts:
        rows.append({"coder": f"arithmetic, context {c} bits", "k": c, "bytes": len(codec.ac_encode(bits, c))})
    p = float(np.mean(bits)) if len(bits) else 0.0
    h = 0.0 if p in (0.0, 1.0) else -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    rows.append({"coder": "order-0 entropy (floor for memoryless coders)", "k": 0, "bytes": h * len(bits) / 8})
    return pd.DataFrame(rows)


def snv_bitmap(vs: VariantSet, cat: Catalogue) -> np.ndarray:
    keys = vs.snv_pos.astype(np.int64) * 4 + vs.snv_alt
    return np.isin(cat.snv_keys, keys).astype(np.uint8)


def sensitivity(vs: VariantSet, p_knowns: Iterable[float], densities: Iterable[float], seed: int = 0,
                del_share: float = 0.1, del_density: float = 0.3, background: str = "local"):
    """Step-1 bitmap saving (%) and step totals over a grid of p_known x catalogue density."""
    import pandas as pd
    rows = []
    for pk in p_knowns:
        for d in densities:
            cat = synthetic_catalogue(vs, pk, d, del_share, del_density, seed, background=background)
            e0, e1, e3 = (encode(vs, cat, L) for L in (STEPS[0], STEPS[1], STEPS[3]))
            eb = encode(vs, cat, BEYOND)
            bm = snv_bitmap(vs, cat)
            rows.append({"background": background, "p_known": pk, "density_per_kb": d, "catalogue SNVs": len(cat.snv_pos),
                         "bitmap ones": float(bm.mean()) if len(bm) else 0.0,
                         "bitmap saving %": 100 * (1 - e1.streams["snv_bitmap"] / max(e0.streams["snv_bitmap"], 1)),
                         "DNAZip bytes": e0.total, "step 3 bytes": e3.total, "beyond bytes": eb.total,
                         "total saving %": 100 * (1 - e3.total / e0.total)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ what a user would pick instead

def minimal_vcf_text(vs: VariantSet, zygosity: bool = True) -> str:
    """A one-sample VCF with only CHROM POS REF ALT GT (REF of SNVs/indels as N: the codec
    takes it from the reference), the input the throughput is quoted in."""
    head = ("##fileformat=VCFv4.2\n"
            f"##contig=<ID={vs.chrom}>\n"
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS\n")
    rows = [(int(p), "N", BASES[a], h) for p, a, h in zip(vs.snv_pos, vs.snv_alt, vs.snv_hom)]
    rows += [(int(p), "N", "N" + q, h) for p, q, h in zip(vs.ins_pos, vs.ins_seq, vs.ins_hom)]
    rows += [(int(p), "N" * (int(n) + 1), "N", h) for p, n, h in zip(vs.del_pos, vs.del_len, vs.del_hom)]
    rows += [(int(p), r, a, h) for p, r, a, h in vs.other]
    rows.sort()
    return head + "".join(f"{vs.chrom}\t{p}\t.\t{r}\t{a}\t.\t.\t.\tGT\t{'1/1' if h else '0/1'}\n"
                          for p, r, a, h in rows)


def general_compressors(name: str, data: bytes) -> list[dict[str, Any]]:
    return [{"input": name, "compressor": "none", "bytes": len(data)},
            {"input": name, "compressor": "gzip -9", "bytes": len(gzip.compress(data, 9, mtime=0))},
            {"input": name, "compressor": "bzip2 -9", "bytes": len(bz2.compress(data, 9))},
            {"input": name, "compressor": "xz -9", "bytes": len(lzma.compress(data, preset=9))}]


def htslib_formats(vcf_text: str) -> dict[str, int]:
    """Bytes of the minimal VCF as BGZF (.vcf.gz) and as BCF, both written by pysam."""
    import pysam
    pysam.set_verbosity(0)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.vcf"
        src.write_text(vcf_text)
        bgz = Path(d) / "out.vcf.gz"
        pysam.tabix_compress(str(src), str(bgz), force=True)
        bcf = Path(d) / "out.bcf"
        with pysam.VariantFile(str(src)) as vin, pysam.VariantFile(str(bcf), "wb", header=vin.header) as out:
            for rec in vin:
                out.write(rec)
        return {"BGZF (.vcf.gz, pysam)": bgz.stat().st_size, "BCF (pysam)": bcf.stat().st_size}


def original_vcf_bytes(path: str | os.PathLike, max_records: int) -> bytes:
    """The distributed VCF, decompressed: the header and the first ``max_records`` records."""
    out, n = [], 0
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if not line.startswith(b"#"):
                n += 1
                if n > max_records:
                    break
            out.append(line)
    return b"".join(out)


def compare_formats(vs: VariantSet, source_path: str | os.PathLike | None, ours: dict[str, int],
                    max_records: int = 10**9):
    """Our layouts beside gzip/bzip2/xz of the VCF and of the minimal table, BGZF and BCF."""
    import pandas as pd
    rows = []
    if source_path is not None:
        raw = original_vcf_bytes(source_path, max_records)
        rows += [{**r, "input": "original VCF (all INFO fields)"} for r in general_compressors("", raw)]
    mv = minimal_vcf_text(vs).encode()
    rows += general_compressors("minimal VCF (POS REF ALT GT)", mv)
    rows += general_compressors("minimal table (POS REF ALT)", vs.minimal_table().encode())
    for k, v in htslib_formats(mv.decode()).items():
        rows.append({"input": "minimal VCF (POS REF ALT GT)", "compressor": k, "bytes": v})
    for k, v in ours.items():
        rows.append({"input": "variants + catalogue", "compressor": k, "bytes": v})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ pure-Python reference coders

def py_vint_encode(values, w: int = 8) -> bytes:
    """Pure-Python VINT, bit-identical to ``codec.vint_encode`` (the speed baseline)."""
    acc, nacc, out = 0, 0, bytearray()
    p = w - 1
    mask = (1 << p) - 1
    for v in values:
        v = int(v)
        while True:
            word = v & mask
            v >>= p
            if v:
                word |= 1 << p
            acc = (acc << w) | word
            nacc += w
            while nacc >= 8:
                nacc -= 8
                out.append((acc >> nacc) & 0xFF)
            acc &= (1 << nacc) - 1
            if not v:
                break
    if nacc:
        out.append((acc << (8 - nacc)) & 0xFF)
    return bytes(out)


def py_vint_decode(data: bytes, n: int, w: int = 8) -> list[int]:
    bits = "".join(f"{b:08b}" for b in data)
    pos, out, p = 0, [], w - 1
    for i in range(n):
        v, shift = 0, 0
        while True:
            if pos + w > len(bits):
                raise codec.TruncatedStreamError(f"VINT (Python): truncated at item {i} of {n}")
            word = int(bits[pos:pos + w], 2)
            pos += w
            v |= (word & ((1 << p) - 1)) << shift
            shift += p
            if not word >> p:
                break
        out.append(v)
    return out


def py_ac_encode(bits, context_bits: int = 0, shift: int = 5) -> bytes:
    """Pure-Python adaptive binary range coder, byte-identical to ``codec.ac_encode``."""
    if len(bits) == 0:
        return b""
    probs = [1024] * (1 << context_bits)
    mask = (1 << context_bits) - 1
    low, rng, cache, cache_size, ctx = 0, 0xFFFFFFFF, 0, 1, 0
    out = bytearray()

    def shift_low():
        nonlocal low, cache, cache_size
        if (low & 0xFFFFFFFF) < 0xFF000000 or (low >> 32):
            temp = cache
            while True:
                out.append((temp + (low >> 32)) & 0xFF)
                temp = 0xFF
                cache_size -= 1
                if not cache_size:
                    break
            cache = (low >> 24) & 0xFF
        cache_size += 1
        low = (low & 0x00FFFFFF) << 8

    for b in bits:
        b = int(b)
        p = probs[ctx]
        bound = (rng >> 11) * p
        if b == 0:
            rng = bound
            probs[ctx] = p + ((2048 - p) >> shift)
        else:
            low += bound
            rng -= bound
            probs[ctx] = p - (p >> shift)
        while rng < (1 << 24):
            rng = (rng << 8) & 0xFFFFFFFF
            shift_low()
        ctx = ((ctx << 1) | b) & mask
    for _ in range(5):
        shift_low()
    return bytes(out)


def py_ac_decode(data: bytes, n: int, context_bits: int = 0, shift: int = 5) -> list[int]:
    if n == 0:
        return []
    if len(data) < 5:
        raise codec.TruncatedStreamError("arithmetic coder (Python): stream truncated")
    probs = [1024] * (1 << context_bits)
    mask = (1 << context_bits) - 1
    code = int.from_bytes(data[:5], "big") & 0xFFFFFFFF
    pos, rng, ctx, out = 5, 0xFFFFFFFF, 0, []
    for i in range(n):
        p = probs[ctx]
        bound = (rng >> 11) * p
        if code < bound:
            rng = bound
            probs[ctx] = p + ((2048 - p) >> shift)
            b = 0
        else:
            code -= bound
            rng -= bound
            probs[ctx] = p - (p >> shift)
            b = 1
        while rng < (1 << 24):
            if pos >= len(data):
                raise codec.TruncatedStreamError(f"arithmetic coder (Python): truncated at bit {i}")
            rng = (rng << 8) & 0xFFFFFFFF
            code = ((code << 8) | data[pos]) & 0xFFFFFFFF
            pos += 1
        out.append(b)
        ctx = ((ctx << 1) | b) & mask
    return out


# ------------------------------------------------------------------ the chapter's run

PEOPLE = {"HG02102": "genomes/chr21-HG02102", "NA20787": "genomes/chr21-NA20787"}


@dataclass(frozen=True)
class Config(ChapterConfig):
    people: tuple[str, ...] = ("HG02102", "NA20787")
    max_records: int = 1_000_000     # the first records only (a region); above 61,651: all of chr21
    p_known: float = 0.82            # Watson-era dbSNP coverage [recalled]
    snv_density_per_kb: float = 3.1  # background catalogue SNVs per kb (DNAZip's dbSNP)
    del_share: float = 0.1           # share of the person's deletions in the catalogue
    del_density_per_kb: float = 0.3  # background catalogue deletions per kb
    catalogue_seeds: int = 5
    k_bitmap: int = 6
    k_del: int = 7
    vint_widths: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 9, 10)
    chunk_ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    p_knowns: tuple[float, ...] = (0.5, 0.82, 0.95, 0.999)
    densities: tuple[float, ...] = (0.5, 1.0, 3.1, 10.0)
    background: str = "local"        # catalogue background: uniform | local (near variants)
    watson_snvs: int = WATSON_SNVS   # synthetic whole genome at the paper's scale; 0: skip
    repeats: int = 5

    CONSTRAINTS: ClassVar[dict] = {
        "people": OneOf(tuple(PEOPLE)), "max_records": Range(1, None),
        "p_known": Range(0, 1), "snv_density_per_kb": Range(0, 1000),
        "del_share": Range(0, 1), "del_density_per_kb": Range(0, 1000),
        "catalogue_seeds": Range(1, 100), "k_bitmap": Range(1, 12), "k_del": Range(1, 12),
        "vint_widths": Range(2, 16), "chunk_ks": Range(1, 12), "p_knowns": Range(0, 1),
        "densities": Range(0, 1000), "background": OneOf(("uniform", "local")),
        "watson_snvs": Range(0, 10_000_000),
        "repeats": Range(2, 100)}

    @classmethod
    def profiles(cls):
        return {"smoke": cls(max_records=6000, catalogue_seeds=2, vint_widths=(3, 4, 5, 6, 8),
                             chunk_ks=(4, 6, 8), p_knowns=(0.82, 0.999), densities=(1.0, 3.1),
                             watson_snvs=200_000, repeats=2),
                "cpu": cls(),
                "gpu": cls(catalogue_seeds=10, repeats=15)}

    def validate(self):
        require(len(self.people) >= 1, "people: name at least one chr21 file")
        require(len(set(self.people)) == len(self.people), "people: each file once")
        require(5 in self.vint_widths and 8 in self.vint_widths,
                "vint_widths must include 5 (the paper's choice) and 8 (DNAZip's)")
        require(self.k_bitmap in self.chunk_ks, "chunk_ks must include k_bitmap")


def layouts(cfg: Config) -> dict[str, Layout]:
    """The cumulative steps with the config's chunk sizes, and the beyond-the-paper coders."""
    steps = [dataclasses.replace(L, k_bitmap=cfg.k_bitmap, k_del=cfg.k_del) for L in STEPS]
    beyond = dataclasses.replace(BEYOND, k_bitmap=cfg.k_bitmap, k_del=cfg.k_del)
    return {"dnazip": steps[0], "step1": steps[1], "step2": steps[2], "step3": steps[3],
            "rice": dataclasses.replace(steps[3], name="step 3 + Rice gaps", gaps="rice"),
            "ac": dataclasses.replace(steps[3], name="step 3 + arithmetic-coded bitmap", bitmap="ac"),
            "beyond": beyond,
            "beyond+zyg": dataclasses.replace(beyond, name="beyond + zygosity", zygosity=True)}


def load_people(cfg: Config) -> dict[str, VariantSet]:
    from .. import data
    return {p: read_vcf(data.path(PEOPLE[p]), 0, cfg.max_records) for p in cfg.people}


def catalogue_for(vs: VariantSet, cfg: Config, seed: int, **over) -> Catalogue:
    kw = dict(p_known=cfg.p_known, snv_density_per_kb=cfg.snv_density_per_kb,
              del_share=cfg.del_share, del_density_per_kb=cfg.del_density_per_kb, seed=seed,
              background=cfg.background)
    kw.update(over)
    return synthetic_catalogue(vs, **kw)


def replicate_table(people: dict[str, VariantSet], cfg: Config):
    """One row per (person, catalogue seed, layout): stream bytes, total, lossless check,
    and the VINT and chunk sweeps' key numbers (the claims' replicates)."""
    import pandas as pd
    rows = []
    lay = layouts(cfg)
    for person, vs in people.items():
        for seed in range(cfg.catalogue_seeds):
            cat = catalogue_for(vs, cfg, seed)
            for key, L in lay.items():
                e = encode(vs, cat, L)
                back = decode(e.blob, cat, vs.chrom)
                rows.append({"person": person, "seed": seed, "layout": key, "name": L.name,
                             "total": e.total, **{f"s_{k}": v for k, v in e.streams.items()},
                             "table_bytes": sum(e.tables.values()),
                             "mismatches": mismatches(vs, back, L.zygosity)})
    return pd.DataFrame(rows)


def sweep_table(people: dict[str, VariantSet], cfg: Config):
    """Per (person, seed): VINT bytes for every w and chunk-Huffman bitmap bytes per k."""
    import pandas as pd
    vrows, krows = [], []
    for person, vs in people.items():
        for seed in range(cfg.catalogue_seeds):
            cat = catalogue_for(vs, cfg, seed)
            v = vint_sweep(vs, cat, cfg.vint_widths).reset_index()
            vrows += [{"person": person, "seed": seed, **r} for r in v.to_dict("records")]
            bm = snv_bitmap(vs, cat)
            for k in cfg.chunk_ks:
                krows.append({"person": person, "seed": seed, "k": k,
                              "bytes": len(codec.chunk_huffman_encode(bm, k))})
            for c in (0, 4, 8, 12):
                krows.append({"person": person, "seed": seed, "k": -c - 1,
                              "bytes": len(codec.ac_encode(bm, c))})
    return pd.DataFrame(vrows), pd.DataFrame(krows)


def gap_coder_table(people: dict[str, VariantSet], cfg: Config):
    """Gap streams (novel SNVs, insertions, deletions not in the catalogue) under VINT
    w = 2..10, Elias gamma/delta (gap + 1) and Golomb-Rice (best k), per person and seed."""
    import pandas as pd
    rows = []
    lay = layouts(cfg)["step3"]
    for person, vs in people.items():
        for seed in range(cfg.catalogue_seeds):
            cat = catalogue_for(vs, cfg, seed)
            keys = vs.snv_pos.astype(np.int64) * 4 + vs.snv_alt
            novel = ~np.isin(keys, cat.snv_keys)
            dknown = np.isin((vs.del_pos.astype(np.int64) << 24) | vs.del_len, cat.del_keys)
            streams = {"SNV": gaps_of(vs.snv_pos[novel]), "insertion": gaps_of(vs.ins_pos),
                       "deletion": gaps_of(vs.del_pos[~dknown])}
            for sname, g in streams.items():
                r = {"person": person, "seed": seed, "stream": sname, "n": len(g)}
                for w in cfg.vint_widths:
                    r[f"VINT w={w}"] = len(codec.vint_encode(g, w))
                r["Elias gamma"] = len(codec.gamma_encode(g + np.uint64(1)))
                r["Elias delta"] = len(codec.delta_encode(g + np.uint64(1)))
                k = best_rice_k(g)
                r["Golomb-Rice"] = len(codec.rice_encode(g, k))
                r["rice k"] = k
                rows.append(r)
    return pd.DataFrame(rows)


def format_table(vs: VariantSet, path, cfg: Config, seed: int = 0, original: bool = True):
    """compare_formats for one person, with our layouts (catalogue seed ``seed``)."""
    cat = catalogue_for(vs, cfg, seed)
    lay = layouts(cfg)
    ours_bytes = {f"ours: {lay[k].name}": encode(vs, cat, lay[k]).total
                  for k in ("dnazip", "step3", "beyond", "beyond+zyg")}
    return compare_formats(vs, path if original else None, ours_bytes, cfg.max_records)


def timing(vs: VariantSet, cfg: Config, repeats: int):
    """Interleaved timings (bench.interleave): read, encode and decode (DNAZip and the
    beyond layout), gzip/xz of the minimal VCF, and the arithmetic coder and VINT in
    Cython against the pure-Python reference of the same coder."""
    import time
    from ..toolkits import bench
    from .. import data
    cat = catalogue_for(vs, cfg, 0)
    lay = layouts(cfg)
    mv = minimal_vcf_text(vs).encode()
    blobs = {k: encode(vs, cat, lay[k]).blob for k in ("dnazip", "beyond")}
    bm = snv_bitmap(vs, cat)
    gaps = gaps_of(np.sort(np.concatenate([vs.snv_pos, vs.ins_pos, vs.del_pos])))
    path = data.path(PEOPLE[cfg.people[0]])

    def timed(fn, number: int = 1):
        def arm():              # seconds per call, over `number` back-to-back calls
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            return (time.perf_counter() - t0) / number
        return arm
    arms = {
        "read VCF (pysam)": timed(lambda: read_vcf(path, 0, cfg.max_records)),
        "encode DNAZip": timed(lambda: encode(vs, cat, lay["dnazip"]), 5),
        "encode beyond": timed(lambda: encode(vs, cat, lay["beyond"]), 5),
        "decode DNAZip": timed(lambda: decode(blobs["dnazip"], cat), 5),
        "decode beyond": timed(lambda: decode(blobs["beyond"], cat), 5),
        "gzip -9 minimal VCF": timed(lambda: gzip.compress(mv, 9)),
        "xz -9 minimal VCF": timed(lambda: lzma.compress(mv, preset=9)),
        "AC encode, Cython": timed(lambda: codec.ac_encode(bm, 8), 20),
        "AC encode, Python": timed(lambda: py_ac_encode(bm, 8)),
        "VINT encode, Cython": timed(lambda: codec.vint_encode(gaps, 5), 20),
        "VINT encode, Python": timed(lambda: py_vint_encode(gaps, 5)),
    }
    res = bench.interleave(arms, repeats=repeats, warmup=1)
    return res, {"minimal_vcf_bytes": len(mv), "bitmap_bits": len(bm), "gaps": len(gaps)}


@dataclass
class Results:
    cfg: Config
    reps: Any                 # replicate_table
    vint: Any                 # sweep_table[0]
    chunks: Any               # sweep_table[1]
    gapcoders: Any
    formats: dict[str, Any]   # person -> format_table
    bench: Any                # bench.BenchResult
    bench_info: dict[str, Any]
    sens: Any = None          # sensitivity() over p_known x density, first person
    watson: Any = None        # watson_scale() table
    watson_info: dict[str, Any] = field(default_factory=dict)


def _per_rep(reps, layout: str, col: str = "total") -> np.ndarray:
    t = reps[reps.layout == layout].sort_values(["person", "seed"])
    return t[col].to_numpy(float)


def step_savings(reps) -> dict[str, np.ndarray]:
    """Per replicate: saving of each step in % of the DNAZip total."""
    base = _per_rep(reps, "dnazip")
    seq = ["dnazip", "step1", "step2", "step3"]
    out = {s: 100 * (_per_rep(reps, a) - _per_rep(reps, s)) / base for a, s in zip(seq, seq[1:])}
    out["total"] = 100 * (base - _per_rep(reps, "step3")) / base
    out["bitmap"] = 100 * (1 - _per_rep(reps, "step1", "s_snv_bitmap") / _per_rep(reps, "dnazip", "s_snv_bitmap"))
    return out


CLAIMS = claims_catalog(
    Claim("step1-bitmap-huffman", "Huffman-coding the catalogue bitmap in k-bit chunks (k = 6) "
          "saves bytes against DNAZip", "saving of step 1, % of the DNAZip total, per "
          "(person, catalogue seed)", Rule(0.0, "above"), paper("improvements table, step 1"),
          "309,617 B = 7.37 % (Watson)"),
    Claim("step2-vint5", "VINT words of 5 bits instead of 8 save bytes (after step 1)",
          "saving of step 2, % of the DNAZip total", Rule(0.0, "above"),
          paper("improvements table, step 2"), "about 129 KiB = 3.1 % (Watson)"),
    Claim("step3-del-bitvector", "Deletions present in the catalogue as a Huffman-coded "
          "bitvector (k = 7) save bytes (after steps 1-2)", "saving of step 3, % of the DNAZip "
          "total", Rule(0.0, "above"), paper("improvements table, step 3"),
          "about 20 KB = 0.5 % (Watson)"),
    Claim("total-saving", "The three steps together save about 11 % against DNAZip",
          "total saving, % of the DNAZip total; threshold half the paper's value",
          Rule(5.5, "above"), paper("abstract and improvements table"), "11.0 % (Watson)"),
    Claim("bitmap-saving", "Chunk Huffman shrinks the SNV bitmap by 17.8-35 % on autosomes",
          "saving on the bitmap stream, %; threshold the paper's lowest chromosome",
          Rule(17.8, "above"), paper("per-chromosome bitmap savings"),
          "17.8-35 % (chrX 49 %, chrY 81 %)"),
    Claim("vint5-near-min", "A 5-bit VINT word is at (or within 2 % of) the minimum of the "
          "U-curve over word sizes", "bytes of all VINT streams at w = 5 over the minimum "
          "over w, minus 1, in %", Rule(2.0, "below"), paper("VINT word-size figure"),
          "w5 2,448 KB is the minimum (w4 2,484, w6 2,481)"),
    Claim("rice-beats-vint", "Golomb-Rice gaps (best k per stream) are smaller than the best "
          "VINT on the gap streams", "Rice bytes / best-w VINT bytes, all gap streams",
          Rule(1.0, "below"), ours("a geometric-like gap distribution suits Rice codes; an "
                                   "earlier small run saw about 8 %"), None),
    Claim("ac-beats-chunk-huffman", "An adaptive arithmetic coder (8-bit context) beats the "
          "best k-bit chunk Huffman on the SNV bitmap", "AC bytes / best-k chunk-Huffman bytes",
          Rule(1.0, "below"), ours("arithmetic coding approaches the entropy without "
                                   "a table"), None),
    Claim("beats-xz-table", "Our best layout is smaller than xz -9 of a minimal variant table",
          "our beyond-the-paper bytes / xz -9 bytes of POS REF ALT", Rule(1.0, "below"),
          ours("what a user would pick instead"), None),
    Claim("beats-bcf", "Our best layout with zygosity is smaller than BCF of the same calls",
          "beyond + zygosity bytes / BCF (pysam) bytes of the minimal VCF with GT",
          Rule(1.0, "below"), related("htslib BCF (Danecek et al. 2021)"), None),
    Claim("lossless", "Every layout decodes to exactly the variant set read from the VCF",
          "records that differ after a round trip, all layouts, people and seeds",
          Rule(0.5, "below", min_n=1), paper("DNAZip and the paper are lossless"), "lossless"),
    Claim("cython-speedup", "The Cython arithmetic coder is at least 10x faster than a "
          "pure-Python reference of the same coder (identical bytes)",
          "Python time / Cython time, paired interleaved repeats", Rule(10.0, "above"),
          ours("the reason to write the bit loops in Cython"), None),
    Claim("dnazip-size-at-watson-scale", "Our DNAZip layout gives about the paper's 4.2 MB "
          "on a synthetic genome of Watson's scale", "|ln(our DNAZip bytes / 4,198,717)|, synthetic "
          "3.3M-SNV genome resampled from chr21, 9,643,218 catalogue entries; threshold ln 1.25",
          Rule(0.2231, "below", min_n=1), paper("DNAZip baseline for Watson (Christley et al. 2009)"),
          "4,198,717 B"),
    Claim("watson-bytes", "Watson's genome takes 3,736,918 bytes with the three steps",
          "bytes for Watson's genome", Untestable("no Watson genome or dbSNP offline; chr21 of "
                                                  "a 1000 Genomes person on GRCh37 is not "
                                                  "Watson on hg18"),
          paper("improvements table"), "3,736,918 B"),
)


def measure(r: Results) -> dict[str, Measurement]:
    """One estimate per claim, replicates = (person, catalogue seed)."""
    from ..stats import bootstrap_ratio, mean_ci, point
    cfg, reps = r.cfg, r.reps
    sv = step_savings(reps)
    n = len(sv["total"])
    est = (lambda x: mean_ci(x)) if n >= 2 else (lambda x: None)
    note = f"{n} replicates: {len(cfg.people)} people x {cfg.catalogue_seeds} catalogue seeds; " \
           f"p_known {cfg.p_known}, {cfg.snv_density_per_kb} background SNVs/kb"
    out = {"step1-bitmap-huffman": Measurement(est(sv["step1"]), note),
           "step2-vint5": Measurement(est(sv["step2"]), note),
           "step3-del-bitvector": Measurement(est(sv["step3"]), note),
           "total-saving": Measurement(est(sv["total"]), note),
           "bitmap-saving": Measurement(est(sv["bitmap"]), note)}
    v = r.vint.sort_values(["person", "seed"])
    g = v.groupby(["person", "seed"])["all VINT streams"]
    at5 = v[v.w == 5].set_index(["person", "seed"])["all VINT streams"]
    excess = 100 * (at5 / g.min() - 1)
    best_w = v.loc[g.idxmin(), "w"].value_counts().to_dict()
    out["vint5-near-min"] = Measurement(est(excess.to_numpy()), f"best w per replicate: {best_w}")
    gc = r.gapcoders.groupby(["person", "seed"]).sum(numeric_only=True)
    vcols = [c for c in gc.columns if c.startswith("VINT w=")]
    ratio_rv = (gc["Golomb-Rice"] / gc[vcols].min(axis=1)).to_numpy()
    out["rice-beats-vint"] = Measurement(est(ratio_rv), "all three gap streams together")
    ch = r.chunks
    huff = ch[ch.k > 0].groupby(["person", "seed"])["bytes"].min()
    ac8 = ch[ch.k == -9].set_index(["person", "seed"])["bytes"]
    out["ac-beats-chunk-huffman"] = Measurement(est((ac8 / huff).to_numpy()),
                                                "best k chosen per replicate (in hindsight)")
    xs, bs = [], []
    for person, f in r.formats.items():
        xz = f[(f.input == "minimal table (POS REF ALT)") & (f.compressor == "xz -9")]["bytes"].iloc[0]
        bcf = f[f.compressor == "BCF (pysam)"]["bytes"].iloc[0]
        t = reps[(reps.person == person)]
        xs += list(t[t.layout == "beyond"]["total"] / xz)
        bs += list(t[t.layout == "beyond+zyg"]["total"] / bcf)
    out["beats-xz-table"] = Measurement(est(np.array(xs)), "xz of the table is per person")
    out["beats-bcf"] = Measurement(est(np.array(bs)), "BCF of the minimal VCF (GT kept, INFO dropped)")
    out["lossless"] = Measurement(point(int(reps["mismatches"].sum())),
                                  f"{len(reps)} round trips")
    b = r.bench
    gate = b.gate()
    out["cython-speedup"] = Measurement(
        b.ratio("AC encode, Python", "AC encode, Cython"),
        f"{b.repeats} interleaved repeats; min ratio {b.min_ratio('AC encode, Python', 'AC encode, Cython'):.0f}x"
        + (f"; {gate}" if gate else "; machine quiet"))
    if r.watson is not None and cfg.watson_snvs == WATSON_SNVS:
        ours_b = float(r.watson["ours bytes"].iloc[0])
        out["dnazip-size-at-watson-scale"] = Measurement(
            point(abs(np.log(ours_b / PAPER_STEPS[0]["paper bytes"]))),
            f"ours {ours_b:,.0f} B; {r.watson_info.get('catalogue_snvs', 0):,} catalogue SNVs")
    else:
        out["dnazip-size-at-watson-scale"] = Measurement(
            None, f"run with watson_snvs={cfg.watson_snvs:,}, not Watson's 3.3M")
    out["watson-bytes"] = Measurement(None, "stated, not testable offline")
    return out


def run(cfg: Config, people: dict[str, VariantSet] | None = None, progress: bool = True) -> Results:
    """Everything the claims need, in one call."""
    from .. import data
    people = people or load_people(cfg)
    reps = replicate_table(people, cfg)
    vint, chunks = sweep_table(people, cfg)
    gapc = gap_coder_table(people, cfg)
    formats = {p: format_table(vs, data.path(PEOPLE[p]), cfg, original=(i == 0))
               for i, (p, vs) in enumerate(people.items())}
    first = people[cfg.people[0]]
    import pandas as pd
    sens = pd.concat([sensitivity(first, cfg.p_knowns, cfg.densities, 0, cfg.del_share,
                                  cfg.del_density_per_kb, bg) for bg in ("local", "uniform")],
                     ignore_index=True)
    wtab, winfo = (watson_scale(first, cfg.watson_snvs, cfg.p_known) if cfg.watson_snvs
                   else (None, {}))
    b, info = timing(first, cfg, cfg.repeats)
    return Results(cfg, reps, vint, chunks, gapc, formats, b, info, sens, wtab, winfo)


# ------------------------------------------------------------------ tables and figures for the notebook

def stream_table(reps, person: str):
    """Mean bytes per stream (rows) and layout (columns) over catalogue seeds, one person."""
    t = reps[reps.person == person]
    cols = [c for c in t.columns if c.startswith("s_")] + ["total", "table_bytes"]
    m = t.groupby("layout", sort=False)[cols].mean().T
    m.index = [c[2:] if c.startswith("s_") else c for c in m.index]
    names = dict(zip(t.layout, t.name))
    return m.rename(columns=names).round(1)


def roundtrip_table(reps):
    return reps.groupby(["person", "layout"], sort=False)["mismatches"].agg(["count", "sum"]) \
        .rename(columns={"count": "round trips", "sum": "records differing"})


def vint_curve(vint, normalise: bool = True):
    """Mean bytes of all VINT streams per w (over people and seeds) beside the paper's KB,
    each relative to its own minimum when ``normalise``."""
    import pandas as pd
    ours_ = vint.groupby("w")["all VINT streams"].mean()
    snv = vint.groupby("w")["SNV gaps"].mean()
    paper_ = pd.Series(PAPER_VINT_KB, name="paper (Watson, KB)")
    out = pd.DataFrame({"ours: all VINT streams (B)": ours_, "ours: novel-SNV gaps (B)": snv,
                        "paper (Watson, KB)": paper_})
    if normalise:
        out["ours / min"] = out.iloc[:, 0] / out.iloc[:, 0].min()
        out["paper / min"] = out["paper (Watson, KB)"] / min(PAPER_VINT_KB.values())
    return out


def chunk_curve(chunks):
    """Mean bitmap bytes per chunk size k (Huffman) and per AC context (k < 0: context
    -k-1 bits), over people and seeds."""
    m = chunks.groupby("k")["bytes"].mean()
    huff = m[m.index > 0]
    ac = m[m.index < 0]
    ac.index = [-k - 1 for k in ac.index]
    return huff, ac.sort_index()


def throughput_table(b, info: dict):
    """Seconds (min, low quantile, median of interleaved repeats) and MB/s of the minimal
    VCF (CHROM POS REF ALT GT) for the codec arms."""
    s = b.summary().copy()
    mb = info["minimal_vcf_bytes"] / 1e6
    s["MB/s (median)"] = mb / s["median"]
    s["MB/s (best)"] = mb / s["min"]
    return s


def speedup_table(b):
    import pandas as pd
    rows = []
    for coder in ("AC encode", "VINT encode"):
        est = b.ratio(f"{coder}, Python", f"{coder}, Cython")
        rows.append({"coder": coder, "Python / Cython (ratio of means)": est.mean,
                     "95% CI low": est.ci_low, "95% CI high": est.ci_high,
                     "min / min": b.min_ratio(f"{coder}, Python", f"{coder}, Cython"),
                     "repeats": est.n})
    return pd.DataFrame(rows).set_index("coder")


def plot_vint(vint, ax=None):
    import matplotlib.pyplot as plt
    ax = ax or plt.gca()
    c = vint_curve(vint)
    ax.plot(c.index, c["ours / min"], "o-", label="ours: chr21, all VINT streams")
    p = c["paper / min"].dropna()
    ax.plot(p.index, p, "s--", label="paper: Watson, VINT payload")
    ax.set_xlabel("VINT word size w (bits; w - 1 payload + 1 continuation)")
    ax.set_ylabel("bytes / minimum over w")
    ax.legend()
    return ax


def plot_chunks(chunks, ax=None):
    import matplotlib.pyplot as plt
    ax = ax or plt.gca()
    huff, ac = chunk_curve(chunks)
    ax.plot(huff.index, huff.values / 1e3, "o-", label="chunk Huffman (table in-band)")
    for ctx, v in ac.items():
        ax.axhline(v / 1e3, ls=":", color=f"C{1 + ctx // 4}", label=f"arithmetic, {ctx}-bit context")
    ax.set_xlabel("chunk size k (bits)")
    ax.set_ylabel("SNV bitmap (kB)")
    ax.legend(fontsize=8)
    return ax
