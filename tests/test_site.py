"""The static site (pdd.site) built from the committed results: every page is there, every
internal link and image resolves, the landing page's numbers are the results files' numbers
(read here independently), and headless Chromium renders the landing page and a notebook
page (screenshots under results/site-screenshots/; skipped where Chromium is absent)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from pdd import cli, site

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "results"
SHOTS = RES / "site-screenshots"
EXECUTED = sorted((RES / "notebooks").glob("**/*.ipynb"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not EXECUTED:
        pytest.skip("no executed notebooks committed under results/notebooks/")
    out = tmp_path_factory.mktemp("site") / "site"
    pages = site.build(out, RES, progress=False)
    return out, pages


class _Refs(HTMLParser):
    """Every href/src of a page, and the landing page's number spans."""

    def __init__(self):
        super().__init__()
        self.refs, self.nums, self._num = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.refs += [a[k] for k in ("href", "src") if a.get(k) is not None]
        if tag == "span" and "num" in (a.get("class") or "").split():
            self._num = {**a, "text": ""}

    def handle_data(self, data):
        if self._num is not None:
            self._num["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._num is not None:
            self.nums.append(self._num)
            self._num = None


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text())
    return p


def test_every_page_built(built):
    out, pages = built
    for rel in ["index.html", "notebooks.html", "tables.html", "paper.html", "paper-pdd.html", "paper-kdsr.html",
                "paper-hr-aware.html", "methods/pdd.html", "methods/hr-aware.html", "methods/kdsr.html", "style.css"]:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    for nb in EXECUTED:  # one page per executed notebook, older runs included
        page = out / "results" / nb.relative_to(RES).with_suffix(".html")
        assert page.is_file(), page
        assert "jp-Notebook" in page.read_text() and "pdd-nav" in page.read_text()
    for md in RES.glob("**/*.md"):
        if "site-screenshots" not in md.parts:
            assert (out / "results" / md.relative_to(RES).with_suffix(".html")).is_file(), md
    for rel in pages:
        assert (out / rel).is_file(), rel
    # the notebook index lists every executed notebook, in order within its run
    index = (out / "notebooks.html").read_text()
    listed = re.findall(r'href="results/notebooks/([^"]+)\.html"', index)
    assert listed == [nb.relative_to(RES / "notebooks").with_suffix("").as_posix() for nb in EXECUTED]
    if any(len(nb.relative_to(RES / "notebooks").parts) > 1 for nb in EXECUTED):
        assert "Older run" in index


def test_every_internal_link_and_image_resolves(built):
    out, _ = built
    checked = 0
    for page in out.rglob("*.html"):
        for ref in _parse(page).refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https", "mailto", "data") or ref.startswith("#"):
                continue
            assert not parts.scheme and not ref.startswith("/"), f"{page}: not a relative link: {ref}"
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.exists(), f"{page.relative_to(out)}: {ref} does not resolve"
            assert out.resolve() in target.parents, f"{page.relative_to(out)}: {ref} leaves the site"
            checked += 1
    assert checked > 100


# --- the landing page's numbers, read here without pdd.site
def _claims_table(md: Path) -> dict:
    text = md.read_text().split("## Adapted specialist vs specialist vs generalist vs control", 1)[1]
    lines = [ln for ln in text.split("\n## ", 1)[0].splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]
    return {(r["method"], r["baseline"], r["test set"], r["metric"]): r for r in rows}


def _value(src: str, key: str) -> float:
    if src == "pdd.paper":
        from pdd.paper import paper_table

        table, domain, method, metric, col = key.split("|")
        t = paper_table(table)
        (v,) = t[(t.domain == domain) & (t.method == method) & (t.metric == metric)][col]
        return float(v)
    path = RES / src
    if path.suffix == ".json":
        v = json.loads(path.read_text())
        for k in key.split("/"):
            v = v[int(k)] if isinstance(v, list) else v[k]
        return float(v)
    kind, method, base, test_set, metric, col = key.split("|")
    assert kind == "claims" and path.suffix == ".md"
    return float(_claims_table(path)[(method, base, test_set, metric)][col])


def test_landing_numbers_are_the_results_numbers(built):
    out, _ = built
    page = out / "index.html"
    nums = _parse(page).nums
    assert nums, "no number on the landing page"
    for n in nums:
        assert n["text"] == format(_value(n["data-src"], n["data-key"]), n["data-fmt"]), n
    # no decimal number typed outside a sourced span
    text = re.sub(r'<span class="num"[^>]*>[^<]*</span>', "", page.read_text())
    text = re.sub(r"<[^>]+>", " ", text)
    assert not re.findall(r"\d+\.\d+", text)
    keys = {(n["data-src"], n["data-key"]) for n in nums}
    # the paper's Tab. 2 gains and, where a premise holds, the premise and the claim table behind the verdict
    assert any(src == "pdd.paper" for src, _ in keys)
    gates = sorted(RES.glob("*/*/premise.json"))
    holding = [g for g in gates if json.loads(g.read_text())["holds"]]
    if not holding:
        assert "premise does not hold" in page.read_text().lower() or not gates
        return
    gate = next(g for g in holding if g.parent.name == "scratch") if any(g.parent.name == "scratch" for g in holding) \
        else holding[0]
    src = gate.relative_to(RES).as_posix()
    assert (src, "table/0/target gap") in keys and (src, "table/0/source gap") in keys
    evidence = [p for p in gate.parent.glob("07_evidence_seeds*.md") if "## Adapted specialist" in p.read_text()]
    if evidence:
        md = max(evidence, key=lambda p: (len(p.stem.split("seeds")[1].split("-")), p.stem))
        claims = _claims_table(md)
        msrc = md.relative_to(RES).as_posix()
        for base in ("specialist", "generalist"):
            assert (msrc, f"claims|static PDD|{base}|target|psnr|difference") in keys
        holds = all(claims[("static PDD", b, "target", "psnr")]["verdict"] == "better" for b in ("specialist", "generalist"))
        verdict = "beats both starting models) " + ("holds" if holds else "does NOT hold")
        assert verdict in page.read_text()


# --- small pieces, by hand
def test_md_tables_reads_pipe_tables_under_their_headings():
    text = "# T\n\n| a | b |\n|---|---|\n| 1 | x y |\n\n## Second\n\ntext\n| c |\n|:-:|\n| 2 |\n"
    assert site.md_tables(text) == {"T": [{"a": "1", "b": "x y"}], "Second": [{"c": "2"}]}


def test_static_notebook_replaces_widgets():
    png = "iVBORw0KGgo="
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_out"]}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "data": {"image/png": png}, "metadata": {}}]}}}}}
    w = "application/vnd.jupyter.widget-view+json"
    nb.cells = [nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", data={w: {"model_id": "bar"}, "text/plain": "run:  50%|#   | 1/2"}),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
        nbformat.v4.new_output("execute_result", data={w: {"model_id": "box"}, "text/plain": "VBox(children=())"},
                               execution_count=1)])]
    out = site.static_notebook(nb)
    assert "widgets" not in out.metadata and "widgets" in nb.metadata  # a copy; the original is untouched
    kinds = [o.output_type for o in out.cells[0].outputs]
    assert kinds == ["stream", "display_data", "display_data"]  # bar dropped; widget -> its image + a note
    assert out.cells[0].outputs[1].data["image/png"] == png
    assert "interactive widget (VBox)" in out.cells[0].outputs[2].data["text/html"]


def test_cli_answers_a_users_mistake_with_status_2(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a site")
    assert cli.run(site.main, "python -m pdd.site", ["--out", str(tmp_path / "mine")]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").exists()  # never deleted
    (tmp_path / "empty_results").mkdir()
    assert cli.run(site.main, "python -m pdd.site", ["--results", str(tmp_path / "empty_results"),
                                                     "--out", str(tmp_path / "s")]) == 2
    assert "make reproduce" in capsys.readouterr().err


# --- the browser check
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_browser_renders_landing_and_a_notebook_page(built, tmp_path):
    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not on PATH (Debian: apt-get install chromium; .ci/run installs it): "
                    "browser check skipped")
    out, pages = built
    evidence = [p for p in pages if re.fullmatch(r"results/notebooks/07_evidence[^/]*\.html", p)]
    nb_page = max(evidence) if evidence else next(p for p in pages if p.startswith("results/notebooks/")
                                                  and not p.endswith("README.html"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, rel in (("landing.png", "index.html"), ("notebook.png", nb_page)):
        shot = SHOTS / name
        shot.unlink(missing_ok=True)
        # timeout: a guard against a hung browser, not a timing assertion
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,1800",
                        (out / rel).resolve().as_uri()], capture_output=True, timeout=180, check=True)
        with Image.open(shot) as im:
            assert im.size == (1280, 1800)
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 100, f"{name}: a blank page"  # text and figures drawn, not an empty window


def test_reproduce_reports_a_site_failure_instead_of_raising(tmp_path, monkeypatch):
    from pdd import reproduce

    def broken(out):
        raise RuntimeError("disk full")

    monkeypatch.setattr(site, "build", broken)
    line = reproduce.build_site(tmp_path / "s")
    assert "FAILED" in line and "disk full" in line and "make site" in line


def test_notebook_pages_render_equations_offline(built):
    """The notebooks' equations load the site's own MathJax (from jupyter-server-mathjax), not a
    CDN, and no page loads require.js from the network (its widgets are static images here)."""
    out, _ = built
    page = (out / "results" / "notebooks").glob("*.html").__next__()
    refs = _parse(page).refs
    mathjax = [r for r in refs if "MathJax.js" in r]
    assert mathjax and not urlsplit(mathjax[0]).scheme, mathjax
    assert (page.parent / urlsplit(mathjax[0]).path).resolve().is_file()
    assert not any("require" in r and urlsplit(r).scheme for r in refs)
