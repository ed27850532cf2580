"""The genome-codec chapter module: VCF reading with pysam, the synthetic catalogue, the
DNAZip layout and the paper's steps round-trip exactly, malformed input names the line."""
import dataclasses
import gzip

import numpy as np
import pytest

from effdl_lib import _codec as c
from effdl_lib.chapter import check_chapter
from effdl_lib.chapters import genome_codec as g

HEADER = """##fileformat=VCFv4.2
##contig=<ID=21,length=48129895>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1
"""
ROWS = [
    "21\t100\t.\tA\tG\t.\t.\t.\tGT\t0|1",
    "21\t150\t.\tC\tT\t.\t.\t.\tGT\t1|1",
    "21\t200\t.\tA\tACGTAC\t.\t.\t.\tGT\t1|0",      # insertion of CGTAC
    "21\t210\t.\tTTA\tT\t.\t.\t.\tGT\t1/1",         # deletion of 2
    "21\t300\t.\tG\tA,T\t.\t.\t.\tGT\t1|2",         # multi-allelic: two SNVs
    "21\t400\t.\tA\tG\t.\t.\t.\tGT\t0|0",           # hom-ref: no variant
    "21\t500\t.\tA\tG\t.\t.\t.\tGT\t./.",           # missing genotype
    "21\t600\t.\tA\t<CN0>\t.\t.\t.\tGT\t0|1",       # symbolic: verbatim stream
    "21\t700\t.\tAC\tGT\t.\t.\t.\tGT\t0|1",         # complex (MNP): verbatim stream
    "21\t800\t.\tT\tC\t.\t.\t.\tGT\t1",             # haploid call
]


def write_vcf(tmp_path, rows, name="t.vcf", gz=False):
    text = HEADER + "".join(r + "\n" for r in rows)
    p = tmp_path / (name + (".gz" if gz else ""))
    if gz:
        import pysam
        plain = tmp_path / (name + ".plain")
        plain.write_text(text)
        pysam.tabix_compress(str(plain), str(p), force=True)
    else:
        p.write_text(text)
    return p


@pytest.fixture
def small(tmp_path):
    return g.read_vcf(write_vcf(tmp_path, ROWS))


def test_read_small_vcf_by_rule(small):
    vs = small
    assert vs.snv_pos.tolist() == [100, 150, 300, 300, 800]
    assert [g.BASES[a] for a in vs.snv_alt] == ["G", "T", "A", "T", "C"]
    assert vs.snv_hom.tolist() == [False, True, False, False, True]
    assert vs.ins_pos.tolist() == [200] and vs.ins_seq == ["CGTAC"]
    assert vs.del_pos.tolist() == [210] and vs.del_len.tolist() == [2] and vs.del_hom.tolist() == [True]
    assert [o[:3] for o in vs.other] == [(600, "A", "<CN0>"), (700, "AC", "GT")]
    k = vs.counts
    assert (k["records"], k["hom_ref"], k["missing_gt"], k["multiallelic"]) == (10, 1, 1, 1)
    assert (k["symbolic"], k["complex"], k["snv"], k["other"]) == (1, 1, 5, 2)


@pytest.mark.parametrize("layout", list(g.STEPS) + [g.BEYOND, dataclasses.replace(g.BEYOND, zygosity=True),
                                                    dataclasses.replace(g.STEPS[3], vint_w=2, k_bitmap=1, k_del=12)])
@pytest.mark.parametrize("p_known", [0.0, 0.5, 1.0])
def test_small_vcf_roundtrips(small, layout, p_known):
    cat = g.synthetic_catalogue(small, p_known, 50.0, 1.0, 20.0, seed=3)
    e = g.encode(small, cat, layout)
    assert sum(e.streams.values()) == len(e.blob)
    back = g.decode(e.blob, cat, "21")
    assert back.records(layout.zygosity) == small.records(layout.zygosity)
    assert g.roundtrip_mismatches(small, cat, layout) == 0


def test_known_snvs_go_to_the_bitmap(small):
    cat = g.synthetic_catalogue(small, 1.0, 0.0, 0.0, 0.0, seed=0)
    assert len(cat.snv_pos) == 5                     # the person's SNVs only
    e = g.encode(small, cat, g.DNAZIP)
    assert e.streams["snv_bitmap"] == 1 and e.streams["snv_novel_pos"] == 0
    cat0 = g.synthetic_catalogue(small, 0.0, 0.0, 0.0, 0.0, seed=0)
    e0 = g.encode(small, cat0, g.DNAZIP)
    # five novel SNVs: gaps 100, 50, 150, 0, 500 in 8-bit VINT = 1+1+2+1+2 bytes
    assert e0.streams["snv_novel_pos"] == 7 and e0.streams["snv_novel_base"] == 2


def test_empty_variant_set_roundtrips(tmp_path):
    vs = g.read_vcf(write_vcf(tmp_path, []))
    cat = g.synthetic_catalogue(vs, 0.5, 1.0, 0.1, 0.3, seed=0)
    for L in (g.DNAZIP, g.BEYOND):
        back = g.decode(g.encode(vs, cat, L).blob, cat)
        assert back.records() == [] == vs.records()


def test_decode_with_wrong_catalogue_or_truncated(small):
    cat = g.synthetic_catalogue(small, 0.5, 50.0, 0.5, 5.0, seed=1)
    other = g.synthetic_catalogue(small, 0.5, 50.0, 0.5, 5.0, seed=2)
    blob = g.encode(small, cat, g.STEPS[3]).blob
    with pytest.raises(g.CatalogueMismatch):
        g.decode(blob, other)
    with pytest.raises(c.CodecError):
        g.decode(blob[:-1], cat)
    with pytest.raises(c.CodecError):
        g.decode(b"XX" + blob[2:], cat)


def test_catalogue_deterministic_per_seed(small):
    a = g.synthetic_catalogue(small, 0.8, 30.0, 0.5, 3.0, seed=7)
    b = g.synthetic_catalogue(small, 0.8, 30.0, 0.5, 3.0, seed=7)
    d = g.synthetic_catalogue(small, 0.8, 30.0, 0.5, 3.0, seed=8)
    assert a.fingerprint() == b.fingerprint() and a.fingerprint() != d.fingerprint()
    assert np.all(np.diff(a.snv_keys) > 0) and np.all(np.diff(a.del_keys) > 0)
    with pytest.raises(ValueError, match="p_known"):
        g.synthetic_catalogue(small, 1.5)


def test_catalogue_density_and_share():
    rng = np.random.default_rng(0)
    pos = np.sort(rng.choice(np.arange(1, 10_000_000), 20000, replace=False))
    vs = g.VariantSet("21", pos, rng.integers(0, 4, 20000).astype(np.uint8), np.zeros(20000, bool),
                      np.zeros(0, np.int64), [], np.zeros(0, bool), pos[:1000] + 1,
                      np.ones(1000, np.int64), np.zeros(1000, bool))
    cat = g.synthetic_catalogue(vs, 0.5, 2.0, 0.2, 0.0, seed=0)
    kb = (pos.max() - pos.min() + 1) / 1000
    assert abs(len(cat.snv_pos) - (10000 + 2.0 * kb)) < 5 * np.sqrt(2.0 * kb + 5000)
    assert abs(len(cat.del_pos) - 200) < 50


@pytest.mark.parametrize("row,needle", [
    ("21\tabc\t.\tA\tG\t.\t.\t.\tGT\t0|1", "line 6"),         # bad position
    ("21\t120\t.\tA\tQ\t.\t.\t.\tGT\t0|1", "unknown ALT allele 'Q'"),
    ("21\t120\t.\tZ\tG\t.\t.\t.\tGT\t0|1", "unknown REF allele 'Z'"),
    ("21\t120\t.\tA\tG\t.\t.\t.\tGT\t0|3", "names an allele"),
    ("21\t50\t.\tA\tG\t.\t.\t.\tGT\t0|1", "out of order"),
])
def test_malformed_lines_name_the_line(tmp_path, row, needle):
    p = write_vcf(tmp_path, [ROWS[0], row])
    with pytest.raises(g.VCFError) as err:
        g.read_vcf(p)
    assert needle in str(err.value) and str(p) in str(err.value)
    assert "line 6" in str(err.value)


def test_truncated_gzip_names_the_line(tmp_path):
    rows = [f"21\t{1000 + 10 * i}\t.\tA\tG\t.\t.\t.\tGT\t0|1" for i in range(30000)]
    p = write_vcf(tmp_path, rows, gz=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(g.VCFError, match=r"line \d+.*truncated"):
        g.read_vcf(p)
    p.write_bytes(data[:40])
    with pytest.raises(g.VCFError, match="line 1: the compressed file is truncated"):
        g.read_vcf(p)


def test_max_records_reads_a_region(tmp_path):
    vs = g.read_vcf(write_vcf(tmp_path, ROWS), max_records=3)
    assert vs.counts["records"] == 3 and vs.n_variants == 3


def test_layout_rejects_bad_values():
    with pytest.raises(ValueError, match="vint_w"):
        g.Layout(vint_w=1)
    with pytest.raises(ValueError, match="bitmap"):
        g.Layout(bitmap="lz")


def test_minimal_vcf_is_readable_by_pysam_and_formats(small):
    text = g.minimal_vcf_text(small)
    sizes = g.htslib_formats(text)
    assert set(sizes) == {"BGZF (.vcf.gz, pysam)", "BCF (pysam)"} and min(sizes.values()) > 0
    rows = g.general_compressors("x", text.encode())
    assert [r["compressor"] for r in rows] == ["none", "gzip -9", "bzip2 -9", "xz -9"]


def test_sweeps_and_tables(small):
    cat = g.synthetic_catalogue(small, 0.5, 50.0, 1.0, 5.0, seed=0)
    v = g.vint_sweep(small, cat, [4, 5, 8])
    assert list(v.index) == [4, 5, 8]
    bm = g.snv_bitmap(small, cat)
    ch = g.chunk_sweep(bm, [2, 6], [0])
    raw = ch[ch.coder == "raw"]["bytes"].iloc[0]
    assert raw == (len(bm) + 7) // 8
    t = g.paper_table(small, cat)
    assert t.loc["total", "paper saving %"] == 11.0


def test_chapter_module_is_sound():
    assert check_chapter(g) == []
    with pytest.raises(Exception, match="vint_widths"):
        g.Config.resolve("cpu", {"vint_widths": [3, 4]})
    with pytest.raises(Exception, match="p_known"):
        g.Config.resolve("cpu", {"p_known": 1.5})


def test_real_reference_roundtrip():
    """GIAB chr20 calls: decode, then REF from the hg19 chr20 FASTA equals the VCF's REF."""
    from effdl_lib import data
    try:
        vcf = data.path("genomes/chr20-giab", download=False)
        fasta = data.path("genomes/chr20-fasta", download=False)
        data.path("genomes/chr20-fasta-fai", download=False)
        data.path("genomes/chr20-fasta-gzi", download=False)
    except data.DataError as err:
        pytest.skip(f"offline data missing: {err}")
    for L in (g.DNAZIP, g.STEPS[3], g.BEYOND):
        r = g.reference_roundtrip(vcf, fasta, L)
        assert r["equal"] and r["differing"] == 0 and r["variants"] == 222


def test_mismatches_counts_differences(small):
    cat = g.synthetic_catalogue(small, 0.5, 50.0, 1.0, 5.0, seed=0)
    back = g.decode(g.encode(small, cat, g.DNAZIP).blob, cat)
    assert g.mismatches(small, back, zygosity=False) == 0
    assert g.mismatches(small, back, zygosity=True) > 0      # DNAZip drops zygosity
    changed = dataclasses.replace(back, snv_pos=back.snv_pos + 1)
    assert g.mismatches(small, changed, zygosity=False) == 2 * len(small.snv_pos)


def test_synthetic_genome_and_watson_scale(small):
    a = g.synthetic_genome(small, 2000, seed=5)
    b = g.synthetic_genome(small, 2000, seed=5)
    assert a.records() == b.records() and len(a.snv_pos) == 2000
    assert len(a.ins_pos) == round(1 / 5 * 2000) and set(a.ins_seq) <= set(small.ins_seq)
    assert np.all(np.diff(a.snv_pos) > 0)
    tab, info = g.watson_scale(small, 3000, seed=1)
    assert info["mismatches"] == 0 and info["snvs"] == 3000
    expect = g.WATSON_CATALOGUE * 3000 / g.WATSON_SNVS
    assert abs(info["catalogue_snvs"] - expect) < 0.1 * expect   # clipping at the ends merges a few
    assert tab["ours % of DNAZip"].iloc[0] == 100.0
