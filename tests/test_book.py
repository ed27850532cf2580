"""effdl_lib.book: the generated pages, from old- and new-style records."""
import json

import pytest

from effdl_lib import book

OLD_CLAIM = {"id": "a", "claim": "x beats y | z", "metric": "acc diff", "rule": "r",
             "paper_value": "1.5 points", "paper_source": "Table 2",
             "measured": {"mean": 0.02, "ci_low": 0.01, "ci_high": 0.03, "n": 3},
             "verdict": "reproduced", "note": ""}
NEW_CLAIM = {"id": "b", "claim": "the hint helps", "metric": "ratio", "rule": "r",
             "origin": {"kind": "related", "where": "Hinton et al. 2015"}, "paper_value": None,
             "measured": None, "verdict": "not testable at this scale", "note": ""}


def record(slug="01_demo", arxiv="arXiv:1911.05275", claims=(OLD_CLAIM, NEW_CLAIM), **extra):
    return {"slug": slug, "chapter": "Demo chapter", "arxiv": arxiv, "profile": "cpu",
            "parameters": {"seeds": 3}, "start": "2026-11-28T07:41:42+00:00",
            "duration_s": 1.0, "environment": {"threads": 2, "cpu": "x", "gpu": None,
                                               "torch": "2", "git_commit": "abc"},
            "claims": list(claims), **extra}


def test_formatters_read_old_and_new_claims():
    assert book.format_paper(OLD_CLAIM) == "1.5 points (Table 2)"
    assert book.format_paper(NEW_CLAIM) == "not available (related work: Hinton et al. 2015)"
    assert book.format_paper_value(NEW_CLAIM) == "not available"
    assert book.format_origin(OLD_CLAIM) == "the paper: Table 2"
    assert book.format_origin({"origin": {"kind": "ours", "where": ""}}) == \
        "this companion's hypothesis"
    assert book.format_paper({"paper_value": "n/a", "paper_source": "not available"}) == "n/a"
    assert book.format_measured(OLD_CLAIM["measured"]) == "0.02 [0.01, 0.03] (3)"
    assert book.format_measured({"mean": 0.5, "ci_low": None, "ci_high": None, "n": 1}) == "0.5 (1)"
    assert book.format_measured(None) == "-"


def test_record_page_lists_every_claim_and_inputs():
    page = book.record_page([record(inputs={"mnist/test": {"sha256": "f" * 64}})])
    assert "| 01_demo | **a**: x beats y \\| z | 1.5 points (Table 2) | 0.02 [0.01, 0.03] (3) |" in page
    assert "not available (related work: Hinton et al. 2015)" in page
    assert "## Inputs" in page and "`mnist/test`" in page
    assert "No chapter has been executed yet." in book.record_page([])


def test_readme_table_has_the_ten_papers():
    papers = book.papers_from_readme()
    assert len(papers) == 10 and len({p.arxiv for p in papers}) == 10
    assert papers[0].arxiv == "1911.05275" and papers[0].chapter.startswith("notebooks/01_")
    assert sum(p.survey_map for p in papers) == 1


def test_overview_counts_verdicts_and_marks_planned(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("| arXiv | paper | chapter |\n|---|---|---|\n"
                      "| [1911.05275](https://arxiv.org/abs/1911.05275) | A, *First* | `notebooks/01_demo` |\n"
                      "| [2210.06711](https://arxiv.org/abs/2210.06711) | B, *Second* | planned |\n")
    papers = book.papers_from_readme(readme)
    extra = record(slug="09_extra", arxiv="arXiv:2401.00001", claims=[OLD_CLAIM],
                   headline="the extra headline")
    page = book.overview_page([record(), extra], papers, book_dir=tmp_path)
    svg = tmp_path / "_generated" / "verdicts.svg"
    rows = [line for line in page.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 3                     # two papers of the table, then the extra record
    assert "1 reproduced<br>1 not testable at this scale" in rows[0]
    assert "x beats y \\| z *(reproduced)*" in rows[0]        # headline: the first claim
    assert "*planned*" in rows[1] and rows[1].endswith("| - | - |")
    assert "the extra headline" in rows[2]
    text = svg.read_text()
    assert "<svg" in text and "planned" in text and "claims checked" in text
    assert book.verdict_counts(record())["reproduced"] == 1


def test_write_pages_and_bad_records(tmp_path):
    recs, out = tmp_path / "recs", tmp_path / "book"
    recs.mkdir()
    (recs / "01_demo.record.json").write_text(json.dumps(record()))
    written = book.write_pages(recs, out)
    assert {p.name for p in written} == {"record.md", "overview.md", "survey_map.md", "01_demo.md"}
    assert (out / "_generated" / "claims" / "01_demo.md").read_text().startswith("**Claims at a glance**")
    assert (out / "_generated" / "verdicts.svg").exists()
    before = (out / "record.md").stat().st_mtime_ns
    book.write_pages(recs, out)                # unchanged text: the file is not rewritten
    assert (out / "record.md").stat().st_mtime_ns == before
    (recs / "02_bad.record.json").write_text("{not json")
    with pytest.raises(ValueError, match="02_bad.record.json: not valid JSON"):
        book.load_records(recs)
    (recs / "02_bad.record.json").write_text("[]")
    with pytest.raises(ValueError, match="not a chapter record"):
        book.load_records(recs)


def test_claims_summary_links_only_to_targets_the_chapter_defines():
    text = book.claims_summary(record(run_id="r1"), source_text="# (claim-a)=\n")
    assert text.startswith("**Claims at a glance** (1 reproduced, 1 not testable at this scale; "
                           "profile `cpu`, run `r1`)")
    assert "| {ref}`a <claim-a>`: x beats y \\| z | 1.5 points (Table 2) |" in text
    assert "| **b**: the hint helps | not available (related work: Hinton et al. 2015) | - |" in text
    assert book.claim_target("Beats_control fashion") == "claim-beats-control-fashion"


def test_survey_map_lists_all_ten_papers_with_verdicts_from_records(tmp_path):
    papers = book.papers_from_readme()
    assert len(papers) == 10 and all(p.arxiv in book.MAP_PLACES for p in papers)
    rec = record(claims=(OLD_CLAIM, NEW_CLAIM))
    page = book.survey_map_page([rec], papers, tmp_path)
    for area in book.SURVEY_AREAS:
        assert f"| {area} |" in page
    for p in papers:
        assert book._cell(p.title) in page
    # the OOD paper's row carries the record's verdicts; the others are planned
    ood = next(line for line in page.splitlines() if "1911.05275" in line or "Learning from a Teacher" in line
               and "notebooks/01_demo" in line)
    assert "1 reproduced, 1 not testable at this scale" in ood
    assert page.count("*planned*") == 9
    assert (tmp_path / book.MAP_FIGURE).exists()
