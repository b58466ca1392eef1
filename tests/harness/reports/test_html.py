"""Tests for `harness.reports.html`: the self-contained HTML page of a report (no browser needed)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
import re
import struct
import zlib

import pytest

from harness.verdicts.evidence import DatasetRecord, ModelRecord
from harness.reports import HTML_FILENAME, plots_in, render_html, study_of, write_html
from harness.reports import (
    ClaimResult,
    GitInfo,
    Report,
    build_report,
    read_report,
    write_report,
)
from tests.harness.reports.test_report import evidence  # the same Evidence builder as the report tests

STARTED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FINGERPRINT = "1f32328c81985666d579d2d5f05f0afca9b8ac29110c31bd5bc70cadc8a52a63"
CONTENT_HASH = "sha256:b09c52f0a9ea055ddbf5e7740a659052541468b284306f71b5b60d90942fc852"
NASTY = '<script>alert("pwned")</script> & <b>bold</b>'


def png_bytes(width: int = 2, height: int = 1, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small valid PNG, made without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def claim(nodeid: str, outcome: str = "passed", **changes) -> ClaimResult:
    fields = dict(nodeid=nodeid, text=f"finding of {nodeid}", source="notebook 000",
                  params={}, outcome=outcome, message="" if outcome == "passed" else f"{outcome} because",
                  duration_s=0.25, seed=99, evidence=(evidence(held=outcome == "passed"),))
    fields.update(changes)
    return ClaimResult(**fields)


CLAIMS = (
    claim("claims/alpha/test_a.py::test_one[layer12]", params={"layer": 12, "span": "goal"}),
    claim("claims/alpha/test_a.py::test_two"),
    claim("claims/alpha/sub/test_b.py::test_three", "failed",
          message="expected ci_excludes(0), got 95% CI [-0.1, 0.2]",
          evidence=(evidence(), evidence(value=0.05, ci_low=-0.1, ci_high=0.2, held=False))),
    claim("claims/beta/test_c.py::test_four", "error", evidence=(),
          message="error in setup: OSError: no model"),
    claim("claims/beta/test_c.py::test_five", "skipped", evidence=(), message="needs a GPU"),
    claim("claims/beta/test_c.py::test_six", "passed", text=NASTY,
          source="https://arxiv.org/abs/1234.5678 <i>fig 3</i>",
          params={"tag": "<x>"},
          evidence=(evidence(statistic="<stat>", expectation="within(-0.05, 0.05)",
                             status="degenerate", held=False, reason="constant <data>"),)),
    claim("claims/test_top.py::test_seven", "xfailed", message="known gap"),
)


def make_report(**changes) -> Report:
    fields = dict(
        seed=1234, resamples=999, command="pytest claims/ -k 'a and b' --claims-seed=1234",
        started=STARTED, duration_s=12.5, claims=CLAIMS,
        models=[ModelRecord("tacgen", "fixture:tacgen", FINGERPRINT, "cuda:0", "bfloat16")],
        datasets=[DatasetRecord("bench", "/data/bench & co.json", CONTENT_HASH)],
        versions={"python": "3.11.7", "torch": "2.13.0", "transformers": None, "harness": "0.1.0"},
        git=GitInfo(commit=COMMIT, dirty=True),
    )
    fields.update(changes)
    return build_report(**fields)


def section(page: str, study: str) -> str:
    m = re.search(rf'<section class="study" id="[^"]*" data-study="{re.escape(study)}">(.*?)</section>',
                  page, re.DOTALL)
    assert m, f"no section for study {study!r}"
    return m.group(1)


def articles(page: str) -> dict[int, tuple[str, str]]:
    """claim index -> (outcome, article html)."""
    found = re.findall(r'<article class="claim \w+" id="claim-(\d+)" data-outcome="(\w+)">(.*?)</article>',
                       page, re.DOTALL)
    return {int(i): (outcome, body) for i, outcome, body in found}


def summary_rows(page: str) -> dict[str, dict[str, int]]:
    body = re.search(r'<section id="summary">(.*?)</section>', page, re.DOTALL).group(1)
    rows = {}
    for study, cells in re.findall(r'<tr [^>]*data-study="([^"]*)">(.*?)</tr>', body, re.DOTALL):
        rows[study] = {o: int(n) for o, n in re.findall(r'data-outcome="(\w+)">(\d+)<', cells)}
    return rows


# ---------------------------------------------------------------------------------------------


def test_studies_are_the_first_directory_under_claims():
    assert study_of("claims/tacgen/test_x.py::test_y[a/b]") == "tacgen"
    assert study_of("claims/tacgen/deep/test_x.py::test_y") == "tacgen"
    assert study_of("benchmarks/claims/planted/test_p.py::t") == "planted"
    assert study_of("claims/test_top.py::t") == "(top level)"
    assert study_of("test_x.py::t") == "(top level)"
    assert study_of("tests/other/test_x.py::t") == "other"


def test_the_page_is_self_contained(tmp_path):
    (tmp_path / "alpha.png").write_bytes(png_bytes())
    page = render_html(make_report(), plots={"alpha": [tmp_path / "alpha.png"]})
    assert page.startswith("<!DOCTYPE html>")
    refs = re.findall(r'\b(?:src|href|action|data|poster)\s*=\s*"([^"]*)"', page, re.IGNORECASE)
    assert refs, "expected at least the plot and the summary links"
    for ref in refs:
        assert ref.startswith(("data:image/", "#")), ref
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert not re.search(r"<(iframe|object|embed)\b", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    assert not re.search(r'(?:src|href)\s*=\s*"https?://', page, re.IGNORECASE)
    # the URL in a claim's source is shown as text, never linked
    assert "https://arxiv.org/abs/1234.5678 &lt;i&gt;fig 3&lt;/i&gt;" in page
    # a Content-Security-Policy forbids loading anything from anywhere else
    assert "default-src &#x27;none&#x27;; img-src data:" in page


def test_every_claim_appears_with_its_verdict():
    report = make_report()
    page = render_html(report)
    found = articles(page)
    assert sorted(found) == list(range(len(report.claims)))
    badges = {"passed": ("held", "held"), "failed": ("failed", "failed"),
              "error": ("error", "error"), "skipped": ("skipped", "skipped"),
              "xfailed": ("skipped", "xfailed (expected failure)")}
    for i, c in enumerate(report.claims):
        outcome, body = found[i]
        assert outcome == c.outcome
        css, label = badges[c.outcome]
        assert f'<span class="verdict {css}">{label}</span>' in body
        assert f'<span class="claim-text">{html.escape(c.text)}</span>' in body
        assert html.escape(c.nodeid) in body
        assert html.escape(c.message) in body


def test_claims_sit_in_their_studys_section():
    page = render_html(make_report())
    alpha, beta, top = section(page, "alpha"), section(page, "beta"), section(page, "(top level)")
    assert "test_one" in alpha and "test_three" in alpha and "test_four" not in alpha
    assert "test_four" in beta and "test_six" in beta and "test_one" not in beta
    assert "test_seven" in top


def test_the_evidence_is_shown():
    page = render_html(make_report())
    _, body = articles(page)[2]  # the failed claim with two records
    for text in ("slope near 0", "encoder.12.resid_post", "0.5", "95% [0.2, 0.8]", "500",
                 "bootstrap BCa over examples", "ci_excludes(0)", "held",
                 "0.05", "95% [-0.1, 0.2]", "NOT HELD"):
        assert text in body, text
    _, first = articles(page)[0]
    assert "<code>layer=12</code>" in first and "<code>span=&#x27;goal&#x27;</code>" in first
    assert "notebook 000" in first
    _, degenerate = articles(page)[5]
    assert "NOT HELD (degenerate: constant &lt;data&gt;)" in degenerate
    _, errored = articles(page)[3]
    assert "No evidence recorded" in errored


def test_provenance_is_in_the_header():
    page = render_html(make_report())
    header = re.search(r'<header id="provenance">(.*?)</header>', page, re.DOTALL).group(1)
    for text in ("1234", "999", "pytest claims/ -k &#x27;a and b&#x27; --claims-seed=1234",
                 COMMIT, "dirty", "3.11.7", "2.13.0", "transformers <code>not installed</code>",
                 "0.1.0", "tacgen", "fixture:tacgen", FINGERPRINT, "cuda:0", "bfloat16",
                 "bench", "/data/bench &amp; co.json", CONTENT_HASH, "2026-01-02T03:04:05+00:00"):
        assert text in header, text


def test_a_clean_tree_and_no_git_are_said_so():
    assert "(clean)" in render_html(make_report(git=GitInfo(commit=COMMIT, dirty=False)))
    page = render_html(make_report(git=None, models=[], datasets=[]))
    assert "not a git repository" in page
    assert "No models registered" in page and "No data sets registered" in page


def test_text_is_escaped():
    page = render_html(make_report())
    assert page.count("<script") == 1  # only the page's own inline script
    assert "<b>bold</b>" not in page and "<i>fig 3</i>" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "tag=&#x27;&lt;x&gt;&#x27;" in page
    assert "&lt;stat&gt;" in page


def test_a_nasty_study_name_and_plot_name_are_escaped(tmp_path):
    plot = tmp_path / 'a"b<c>.png'
    plot.write_bytes(png_bytes())
    report = make_report(claims=[claim('claims/x"<y>/test_a.py::t')])
    page = render_html(report, plots={'x"<y>': [plot]})
    assert 'x"<y>' not in page and 'a"b<c>' not in page
    assert "x&quot;&lt;y&gt;" in page and "a&quot;b&lt;c&gt;.png" in page


def test_summary_counts_claims_per_study():
    rows = summary_rows(render_html(make_report()))
    zero = {"passed": 0, "failed": 0, "error": 0, "skipped": 0, "xfailed": 0}
    assert rows == {
        "alpha": {**zero, "passed": 2, "failed": 1},
        "beta": {**zero, "passed": 1, "error": 1, "skipped": 1},
        "(top level)": {**zero, "xfailed": 1},
        "": {**zero, "passed": 3, "failed": 1, "error": 1, "skipped": 1, "xfailed": 1},
    }


def test_the_summary_names_held_failed_errored_skipped():
    page = render_html(make_report(claims=CLAIMS[:2]))
    summary = re.search(r'<section id="summary">(.*?)</section>', page, re.DOTALL).group(1)
    heads = re.findall(r"<th>(\w+)</th>", summary)
    assert heads == ["study", "claims", "held", "failed", "errored", "skipped"]


def test_a_plot_is_an_inline_png_in_its_studys_section(tmp_path):
    data = png_bytes(3, 2)
    plot = tmp_path / "steering_layer-12.png"
    plot.write_bytes(data)
    page = render_html(make_report(), plots={"beta": [plot]})
    beta = section(page, "beta")
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', beta)
    assert len(uris) == 1
    decoded = base64.b64decode(uris[0], validate=True)
    assert decoded.startswith(PNG_SIGNATURE) and decoded == data
    assert "<figcaption>steering layer 12 (<code>steering_layer-12.png</code>)</figcaption>" in beta
    assert "<img" not in section(page, "alpha")
    assert page.count("<img") == 1
    assert str(tmp_path) not in page  # the page does not depend on where the plots were


def test_plots_keep_their_order_and_a_study_without_claims_gets_a_section(tmp_path):
    paths = []
    for name, color in (("b", (0, 0, 255)), ("a", (0, 255, 0))):
        paths.append(tmp_path / f"{name}.png")
        paths[-1].write_bytes(png_bytes(rgb=color))
    page = render_html(make_report(), plots={"alpha": paths, "gamma": [paths[0]]})
    alpha = section(page, "alpha")
    assert alpha.index("<code>b.png</code>") < alpha.index("<code>a.png</code>")
    assert "<code>b.png</code>" in section(page, "gamma")


def test_an_unreadable_or_bad_plot_is_named_not_fatal(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    missing = tmp_path / "missing.png"
    page = render_html(make_report(), plots={"alpha": [bad, missing]})
    alpha = section(page, "alpha")
    assert "<img" not in alpha
    assert "bad.png</code>) is not a PNG file" in alpha
    assert "missing.png</code>) cannot be read" in alpha


def test_an_svg_plot_is_inlined_as_a_data_uri(tmp_path):
    svg = tmp_path / "shape.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    page = render_html(make_report(), plots={"alpha": [svg]})
    uri = re.search(r'<img src="data:image/svg\+xml;base64,([^"]+)"', section(page, "alpha")).group(1)
    assert base64.b64decode(uri).startswith(b"<svg")


def test_identical_input_gives_identical_output(tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "p.png").write_bytes(png_bytes())
    one = render_html(make_report(), plots=plots_in(tmp_path))
    two = render_html(make_report(), plots=plots_in(tmp_path))
    assert one == two
    first = write_html(make_report(), tmp_path).read_bytes()
    second = write_html(make_report(), tmp_path).read_bytes()
    assert first == second


def test_the_page_from_the_json_alone_is_the_same(tmp_path):
    report = make_report()
    back = read_report(write_report(report, tmp_path))
    assert render_html(back) == render_html(report)


def test_an_empty_report_renders():
    page = render_html(make_report(claims=[], models=[], datasets=[]))
    assert "0 claims (none)" in page
    assert summary_rows(page)[""]["passed"] == 0


def test_plots_in_finds_each_studys_pngs_sorted(tmp_path):
    for rel in ("beta/z.png", "beta/a.png", "beta/notes.txt", "alpha/m.PNG", "top.png",
                ".hidden/x.png", "empty/readme.md", "gamma/sub/deep.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes())
    (tmp_path / "beta" / "dir.png").mkdir()
    found = plots_in(tmp_path)
    assert found == {"(top level)": [tmp_path / "top.png"], "alpha": [tmp_path / "alpha/m.PNG"],
                     "beta": [tmp_path / "beta/a.png", tmp_path / "beta/z.png"]}
    assert plots_in(tmp_path, studies=["beta", "nope"]) == {"beta": found["beta"]}
    assert plots_in(tmp_path / "does-not-exist") == {}


def test_a_claims_study_is_the_one_its_identity_names_wherever_its_folder_is():
    from harness.reports.html_plots import study_of

    # a study of one's own in any folder: its identity names it, the node id does not
    assert study_of("animal/test_animal.py::test_x", "animal/test_animal.py::test_x") == "animal"
    assert study_of("test_animal.py::test_x", "animal/test_animal.py::test_x") == "animal"
    assert study_of("claims/tacgen/test_x.py::t", "") == "tacgen"      # a schema-2 report
    assert study_of("test_x.py::t", "test_x.py::t") == "(top level)"   # no study: plots at the top


def test_write_html_writes_the_page_with_the_studys_plots(tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "spans.png").write_bytes(png_bytes())
    (tmp_path / "stranger").mkdir()  # not a study of this report: left out
    (tmp_path / "stranger" / "other.png").write_bytes(png_bytes())
    report = make_report()
    target = tmp_path / "out"
    path = write_html(report, tmp_path)
    assert path == tmp_path / HTML_FILENAME
    page = path.read_text(encoding="utf-8")
    assert page == render_html(report, plots={"alpha": [tmp_path / "alpha" / "spans.png"]})
    assert "spans.png" in section(page, "alpha") and "other.png" not in page
    assert (path.stat().st_mode & 0o777) == 0o644
    assert write_html(report, target) == target / HTML_FILENAME  # creates the directory
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_previous_page_survives_a_failure_to_replace_it(tmp_path, monkeypatch):
    path = write_html(make_report(), tmp_path)
    before = path.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())

    def refuse(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk on fire"):
        write_html(make_report(seed=5), tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_the_previous_page_survives_an_interrupt_while_writing(tmp_path, monkeypatch):
    import harness.reports.html as html_mod

    path = write_html(make_report(), tmp_path)
    before = path.read_bytes()
    real_fsync = os.fsync
    calls = []

    def fsync_then_fail(fd):
        calls.append(fd)
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(html_mod.os, "fsync", fsync_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_html(make_report(seed=5), tmp_path)
    assert calls
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [HTML_FILENAME]


def test_writing_into_a_file_path_names_the_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from harness.reports import ReportError

    with pytest.raises(ReportError, match="cannot create the report directory"):
        write_html(make_report(), blocker / "sub")


def test_each_claim_shows_its_family_correction_and_judged_level():
    family = "claims/alpha/test_a.py::test_one"
    report = make_report(claims=(claim(f"{family}[layer12]", family=family, family_size=4,
                                       correction="bonferroni", level=0.9875),))
    page = render_html(report)
    shown = re.search(r'<dd class="family">(.*?)</dd>', page).group(1)
    assert shown == f"<code>{family}</code>: 4 claims, correction bonferroni, judged at the 98.75% level"
