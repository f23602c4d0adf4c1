"""`make site`: the executed notebooks and the committed results as a static website.

Nothing is executed: the pages are read from what ``make reproduce`` committed under
``results/`` -- the executed notebooks (``results/notebooks/**/*.ipynb``), the per-setting
tables (``results/<domain>/<preset>/*.md|csv|json``), the figures and ``results/README.md`` --
and from the papers' transcribed tables (``pdd.paper``). Every number on the landing page
is read from those files and carries where it came from (``<span class="num" data-src=...
data-key=... data-fmt=...>``), so ``tests/test_site.py`` can check it against the file.

Tool: nbconvert's HTML exporter (lab template), already installed with JupyterLab, papermill
and nbval; the index, landing, table, paper and method pages are small generated HTML.
It works offline, needs no Node, and builds in seconds. Interactive widgets cannot run in a
static page: a widget shows the first view it rendered (its Output widgets' images) and a
note; tqdm progress bars are left out. Math renders with MathJax when the page is online
(raw TeX offline).

    python -m pdd.site [--out site]      # then open site/index.html

Site layout (relative links only: works from file:// and as a GitHub Pages site):
  index.html          the paper's claim and the measured answer, with the key figure
  notebooks.html      every executed notebook, in order, grouped by run
  tables.html         every results table and figure
  paper.html          ours beside the papers; paper-*.html the papers' printed tables
  methods/*.html      one page per method: what it does, which notebook shows it
  results/...         a mirror of results/: notebooks and Markdown as HTML, CSV/JSON/PNG as is
"""
from __future__ import annotations

import argparse
import copy
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

from . import cli

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
MARKER = ".pdd-site"  # written into the output folder: only such a folder is ever replaced
SKIP = ("site-screenshots",)  # results/ folders that are not part of the site (screenshots OF the site)
WIDGET = "application/vnd.jupyter.widget-view+json"
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar's text form
NAV = (("index.html", "Home"), ("notebooks.html", "Notebooks"), ("tables.html", "Results tables"),
       ("paper.html", "Paper beside ours"), ("methods/pdd.html", "PDD"), ("methods/hr-aware.html", "HR-aware"),
       ("methods/kdsr.html", "KDSR"))
CLAIMS_HEADING = "Adapted specialist vs specialist vs generalist vs control"

CSS = """
body.pdd-page { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0; }
body.pdd-page main { max-width: 62rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
.pdd-nav { background: #24292f; padding: .55rem 1.5rem; font: 15px/1.4 system-ui, sans-serif; }
.pdd-nav a { color: #f0f3f6; margin-right: 1.2rem; text-decoration: none; }
.pdd-nav a:hover { text-decoration: underline; }
.pdd-banner { background: #fff8c5; border-bottom: 1px solid #d4a72c; padding: .5rem 1.5rem;
              font: 14px/1.45 system-ui, sans-serif; }
.lead { font-size: 1.1rem; color: #444; }
.verdict { font-weight: 600; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .92rem; color: #555; }
table { border-collapse: collapse; font-size: .86rem; margin: .8rem 0; }
th, td { border: 1px solid #d0d7de; padding: .2rem .45rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.scroll { overflow-x: auto; }
.muted { color: #666; font-size: .92rem; }
.gallery img { max-width: 18rem; border: 1px solid #ddd; margin: .3rem; vertical-align: top; }
code { background: #f6f8fa; padding: 0 .2rem; }
footer { color: #777; font-size: .85rem; margin-top: 3rem; }
.pdd-widget { font-style: italic; color: #555; }
"""

esc = html.escape


# ----------------------------------------------------------------------------- reading results
def md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The pipe tables of a results Markdown file, keyed by the ``## `` heading above each
    (the file's title for the first): a list of {column: cell text} rows."""
    tables, heading, rows, cols = {}, "", [], None
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cols is None:
                cols, rows = cells, []
            elif not set("".join(cells)) <= set("-: "):
                rows.append(dict(zip(cols, cells)))
            continue
        if cols is not None:
            tables[heading], cols = rows, None
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return tables


def _seeds(stem: str) -> list[str]:
    """'07_evidence_seeds0-1' -> ['0', '1']."""
    m = re.search(r"seeds([\d-]+)", stem)
    return m.group(1).split("-") if m else []


def _num(value: float, fmt: str, src: str, key: str) -> str:
    """A number on the landing page with where it was read from (checked by tests/test_site.py)."""
    return (f'<span class="num" data-src="{esc(src)}" data-key="{esc(key)}" data-fmt="{esc(fmt)}">'
            f"{format(value, fmt)}</span>")


def _json_num(res: Path, path: Path, key: str, fmt: str = "+.2f") -> str:
    value = json.loads(path.read_text())
    for k in key.split("/"):
        value = value[int(k)] if isinstance(value, list) else value[k]
    return _num(float(value), fmt, path.relative_to(res).as_posix(), key)


def _premise_sentence(res: Path, gate: Path, seeds=None) -> str:
    """Specialist - generalist PSNR on source and target per seed, with CIs, from premise.json."""
    rows = json.loads(gate.read_text())["table"]
    parts = []
    for i, r in enumerate(rows):
        if seeds is not None and str(r["seed"]) not in seeds:
            continue
        n = lambda k: _json_num(res, gate, f"table/{i}/{k}")  # noqa: E731
        parts.append(f"seed {r['seed']}: {n('source gap')} dB [{n('source lo')}, {n('source hi')}] on the source, "
                     f"{n('target gap')} dB [{n('target lo')}, {n('target hi')}] on the target")
    return "; ".join(parts)


def _claims(res: Path, folder: Path) -> tuple[Path, dict] | None:
    """The claim table (paired differences with CIs) of the evidence file with the most seeds."""
    files = [p for p in folder.glob("07_evidence_seeds*.md") if CLAIMS_HEADING in p.read_text()]
    if not files:
        return None
    best = max(files, key=lambda p: (len(_seeds(p.stem)), p.stem))
    rows = md_tables(best.read_text())[CLAIMS_HEADING]
    return best, {(r["method"], r["baseline"], r["test set"], r["metric"]): r for r in rows}


def _claim(res: Path, md: Path, table: dict, method: str, base: str, unit: str = " dB") -> tuple[str, str]:
    """'+0.41 dB [+0.16, +0.67] vs the specialist (better)' for the target PSNR, and the verdict."""
    r = table[(method, base, "target", "psnr")]
    src = md.relative_to(res).as_posix()
    n = lambda col: _num(float(r[col]), "+.2f", src, f"claims|{method}|{base}|target|psnr|{col}")  # noqa: E731
    return f"{n('difference')}{unit} [{n('lo')}, {n('hi')}] vs the {esc(base)} (<b>{esc(r['verdict'])}</b>)", r["verdict"]


def _paper_gains() -> str:
    """The paper's Tab. 2: RealESRGAN + Ours (EMA) over RealESRGAN, PSNR, per test set (printed deltas)."""
    from .paper import paper_table

    t2 = paper_table("Tab. 2")
    rows = t2[(t2.method == "RealESRGAN + Ours") & (t2.metric == "psnr")]
    return ", ".join(f"{esc(r.domain)} {_num(float(r.printed_delta), '+.2f', 'pdd.paper', f'Tab. 2|{r.domain}|RealESRGAN + Ours|psnr|printed_delta')}"
                     for r in rows.itertuples())


def landing(res: Path, pages: dict[str, str]) -> str:
    """The landing page's body: the paper's claim, the premise, our answer, under which length and
    gates it holds and where the fair test stands (``experiments.reports.fair_test_lines``), the key figure."""
    from .experiments.reports import fair_test_lines

    gates = sorted(res.glob("*/*/premise.json"), key=lambda p: (p.parent.name != "scratch", str(p)))
    holding = [g for g in gates if json.loads(g.read_text()).get("holds")]
    body = ["<h1>Pairwise Distance Distillation, measured</h1>",
            '<p class="lead">A companion to <em>Pairwise Distance Distillation for Unsupervised Real-World Image '
            "Super-Resolution</em> (ECCV 2024): the method implemented from the paper, run at CPU size, and its claim "
            "tested against controls. This site is built from the committed executed notebooks and results; every "
            "number on this page is read from them.</p>",
            "<h2>The paper's claim</h2>",
            "<p>PDD adapts a super-resolution network to a real-world camera from that camera's low-resolution photos "
            "alone. A <em>generalist</em>, trained on a broad synthetic degradation pipeline, is robust on real input; "
            "a <em>specialist</em>, trained on bicubic pairs, is sharp on synthetic input but breaks on real input. "
            "PDD distils how the generalist's predictions on real and synthetic inputs relate into the specialist, "
            "which should then beat both starting models on the target camera. In the paper's Tab. 2, RealESRGAN + "
            f"PDD (EMA) gains over RealESRGAN, in dB PSNR: {_paper_gains()}.</p>",
            "<h2>What this companion measured</h2>"]
    if not gates:
        body.append("<p>No premise gate is committed yet (notebook 02 writes <code>premise.json</code>): "
                    "nothing here tests the paper's claim.</p>")
        return "\n".join(body)
    if not holding:
        body.append("<p>In no committed setting does the premise hold (the specialist is not worse than the "
                    "generalist on the target), so nothing here tests the paper's claim yet.</p>")
    for gate in holding[:1]:
        folder = gate.parent
        domain, preset = folder.parent.name, folder.name
        found = _claims(res, folder)
        seeds = _seeds(found[0].stem) if found else None
        margin = " with margin" if json.loads(gate.read_text()).get("with_margin") else ""
        body.append(f"<p>The claim rests on a premise: a specialist better than the generalist on the synthetic "
                    f"source and worse on the target domain. On <b>{esc(domain)}</b> with the <code>{esc(preset)}</code> "
                    f"preset, notebook 02 measures it (specialist − generalist PSNR, 95% CI) — "
                    f"{_premise_sentence(res, gate, seeds)}: the premise <b>holds{margin}</b>, so this setting tests "
                    f"the claim.</p>")
        if found is None:
            body.append("<p>No method comparison with paired CIs is committed for this setting yet (notebook 07).</p>")
            continue
        md, table = found
        vs_s, v_s = _claim(res, md, table, "static PDD", "specialist")
        vs_g, v_g = _claim(res, md, table, "static PDD", "generalist")
        holds = v_s == "better" and v_g == "better"
        text = (f"<p>Paired per image over seeds {', '.join(seeds)} (notebook 07), <b>static PDD</b> — the adapted "
                f"specialist — scores on the target {vs_s}, {vs_g}")
        if ("static PDD", "specialist finetune control", "target", "psnr") in table:
            text += f", and {_claim(res, md, table, 'static PDD', 'specialist finetune control')[0]}: the specialist " \
                    "fine-tuned with the same supervised loss and no distillation"
        text += (f'. <span class="verdict">The paper\'s claim (beats both starting models) '
                 f"{'holds' if holds else 'does NOT hold'} here.</span>")
        if ("EMA PDD", "generalist", "target", "psnr") in table:
            e_g, ve_g = _claim(res, md, table, "EMA PDD", "generalist")
            line = f" <b>EMA PDD</b>, the paper's Tab. 2 version: {e_g}"
            ve_c = None
            if ("EMA PDD", "finetune control", "target", "psnr") in table:
                e_c, ve_c = _claim(res, md, table, "EMA PDD", "finetune control")
                line += f", {e_c}"
            ok = ve_g == "better" and ve_c == "better"
            text += line + f' — <span class="verdict">the paper\'s direction {"holds" if ok else "does NOT hold"} here.</span>'
        body.append(text + "</p>")
        fair = fair_test_lines(folder, link_base="results/", study_verdict=False)
        if fair:
            body.append("<h3>How fair is this verdict?</h3><ul>" + "".join(f"<li>{_inline(line)}</li>" for line in fair)
                        + "</ul>")
        fig = res / "figures" / f"07_evidence_seeds{'-'.join(seeds)}_1.png"
        fig = fig if fig.exists() else res / "figures" / "07_evidence_1.png"
        if fig.exists():
            nb_page = f"results/notebooks/{fig.stem.rsplit('_', 1)[0]}.html"
            link = f' (<a href="{nb_page}">notebook {esc(fig.stem.rsplit("_", 1)[0])}</a>)' if nb_page in pages else ""
            body.append(f'<figure><img src="results/figures/{fig.name}" alt="gain over the generalist, target and '
                        f'source"><figcaption>Each method\'s gain over the generalist, PSNR against NIQE with 95% CIs, '
                        f"on the target domain (left) and on the bicubic source protocol (right){link}. A method that "
                        "adapts moves up on the left without moving the same way on the right.</figcaption></figure>")
        body.append(f'<p class="muted">Read from <a href="results/{md.relative_to(res).with_suffix(".html").as_posix()}">'
                    f"{esc(md.relative_to(res).as_posix())}</a> and <a href=\"results/"
                    f"{gate.relative_to(res).as_posix()}\">{esc(gate.relative_to(res).as_posix())}</a>.</p>")
    others = [g for g in gates if g not in holding[:1]]
    if others:
        body.append("<h3>Other settings</h3><ul>")
        for gate in others:
            folder = gate.parent
            holds = json.loads(gate.read_text()).get("holds")
            body.append(f"<li>{esc(folder.parent.name)}, <code>{esc(folder.name)}</code> preset: premise "
                        f"<b>{'holds' if holds else 'does NOT hold'}</b> — {_premise_sentence(res, gate, ['0'])}"
                        + ("" if holds else "; this setting does not test the claim") + ".</li>")
        body.append("</ul>")
    body.append('<p>More: <a href="notebooks.html">every executed notebook</a>, <a href="tables.html">every '
                'results table</a>, <a href="paper.html">our numbers beside the paper\'s</a>, and <a '
                'href="results/README.html">the summary <code>make reproduce</code> wrote</a>.</p>')
    return "\n".join(body)


# ----------------------------------------------------------------------------- pages
def layout(title: str, body: str, depth: int, commit: str) -> str:
    up = "../" * depth
    nav = "".join(f'<a href="{up}{href}">{label}</a>' for href, label in NAV)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · PDD companion</title>"
            f'<link rel="stylesheet" href="{up}style.css"></head>\n<body class="pdd-page">'
            f'<nav class="pdd-nav">{nav}</nav>\n<main>\n{body}\n<footer>Built by <code>python -m pdd.site</code> '
            f"from the committed <code>results/</code> at commit <code>{esc(commit)}</code>; nothing was "
            f"executed.</footer></main></body></html>\n")


def _relink(text: str) -> str:
    """Relative links to .md / .ipynb files point at their HTML pages."""
    return re.sub(r'((?:href|src)=")([^":#?]+)\.(?:md|ipynb)([#"])', r"\1\2.html\3", text)


def _markdown(text: str) -> str:
    import mistune

    return _relink(mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])(text))


def _inline(text: str) -> str:
    """One line of Markdown as inline HTML (no enclosing paragraph)."""
    return re.sub(r"^<p>(.*)</p>\s*$", r"\1", _markdown(text).strip(), flags=re.S)


def _title(nb: dict, fallback: str) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _widget_outputs(state: dict, model_id: str, seen=None) -> list[dict]:
    """The outputs an interactive widget had rendered (its Output widgets'), children first-to-last."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    st = state[model_id].get("state", {})
    outs = list(st.get("outputs", [])) if state[model_id].get("model_name") == "OutputModel" else []
    for child in st.get("children", []):
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            outs += _widget_outputs(state, child[len("IPY_MODEL_"):], seen)
    return outs


def static_notebook(nb):
    """A copy of an executed notebook for a static page: no widget scripts; a widget shows the
    outputs it had rendered plus a note, a tqdm bar (whose final state only the live widget
    holds) is left out."""
    import nbformat

    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET not in data:
                kept.append(out)
                continue
            text = "".join(data.get("text/plain", ""))
            if PROGRESS.search(text):
                continue
            kind = text.split("(", 1)[0] or "widget"
            kept += [nbformat.from_dict(o) for o in _widget_outputs(state, data[WIDGET].get("model_id", ""))
                     if o.get("output_type") in ("display_data", "execute_result", "stream")]
            kept.append(nbformat.v4.new_output("display_data", data={"text/html": (
                f'<p class="pdd-widget">An interactive widget ({esc(kind)}) was here; the static page shows the '
                "view it first rendered, if any. Open the notebook in Jupyter to use it.</p>")}))
        cell.outputs = kept
    return nb


MATHJAX_DIR = "_static/mathjax"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the configs jupyter-server-mathjax ships
CDN_REQUIREJS = re.compile(r'<script[^>]*src="https://[^"]*require(\.min)?\.js"[^>]*></script>\s*')


def copy_mathjax(out: Path) -> bool:
    """MathJax 2 from the jupyter-server-mathjax package into ``out/_static/mathjax`` (without its
    translations), so the notebooks' equations render offline from file://. False if the
    package is absent: the pages then load MathJax from nbconvert's CDN default."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return False
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(static, out / MATHJAX_DIR, ignore=shutil.ignore_patterns("localization"))
    return True


def notebook_page(path: Path, res: Path, depth: int, banner: str, local_mathjax: bool = False) -> tuple[str, str]:
    """(title, HTML) of one executed notebook, through nbconvert's HTML exporter. With
    ``local_mathjax`` the page loads the site's own MathJax copy (``copy_mathjax``)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)
    title = _title(nb, path.stem)
    up = "../" * depth
    kw = {"mathjax_url": f"{up}{MATHJAX_DIR}/MathJax.js?config={MATHJAX_CONFIG}"} if local_mathjax else {}
    exporter = HTMLExporter(template_name="lab", **kw)
    body, _ = exporter.from_notebook_node(static_notebook(nb), resources={"metadata": {"name": title}})
    # require.js only serves interactive widget/JS outputs, which static_notebook turned into
    # images: drop the CDN script so the page needs nothing from the network
    body = CDN_REQUIREJS.sub("", body)
    nav = "".join(f'<a href="{up}{href}">{label}</a>' for href, label in NAV)
    body = body.replace("</head>", f'<link rel="stylesheet" href="{up}style.css">\n</head>', 1)
    body = re.sub(r"(<body[^>]*>)", lambda m: f'{m.group(1)}\n<nav class="pdd-nav">{nav}</nav>\n'
                  f'<div class="pdd-banner">{banner}</div>', body, count=1)
    return title, _relink(body)


def _run_label(nb: dict) -> str:
    pm = nb.get("metadata", {}).get("papermill", {})
    bits = []
    if pm.get("end_time"):
        bits.append(f"executed {esc(pm['end_time'][:16].replace('T', ' '))}")
    if pm.get("duration") is not None:
        bits.append(f"{pm['duration']:.0f} s")
    if pm.get("parameters"):
        bits.append(f"parameters <code>{esc(json.dumps(pm['parameters']))}</code>")
    return ", ".join(bits)


def _df_html(df) -> str:
    return '<div class="scroll">' + df.to_html(index=False, na_rep="", border=0, escape=True) + "</div>"


def _paper_pivot(df) -> str:
    """A long frame of printed values as one table per paper table: rows (data set, metric), columns method."""
    place = "domain" if "domain" in df.columns else "dataset"
    df = df.assign(column=[m if not s else f"{m} ({s})" for m, s in zip(df.method, df.setting.fillna(""))])
    out = []
    for table, t in df.groupby("table", sort=False):
        wide = t.pivot_table(index=[place, "metric"], columns="column", values="printed", aggfunc=" / ".join,
                             sort=False).reset_index()
        wide.columns.name = None
        notes = sorted({n for n in t.note.fillna("") if n})
        caption = t.caption.iloc[0] if "caption" in t.columns else ""
        out.append(f"<h3>{esc(table)}{': ' + esc(caption) if caption else ''}</h3>" + _df_html(wide)
                   + ("<ul class='muted'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>" if notes else ""))
    return "\n".join(out)


def paper_pages() -> dict[str, tuple[str, str]]:
    """The three papers' printed tables (pdd.paper), as read by the comparisons."""
    from . import paper as P

    def items(rows):
        return "<ul>" + "".join("<li>" + esc("; ".join(f"{k}: {v}" for k, v in r.items())) + "</li>" for r in rows) + "</ul>"

    pdd = ("<h1>PDD (ECCV 2024): the printed tables</h1>"
           f"<p>Transcribed by hand in <code>pdd/paper.py</code> and checked against the paper's text by "
           f"<code>tests/test_paper.py</code>; values as printed. {esc(P.CONVENTIONS)}</p>"
           + _paper_pivot(P.paper_table()) + "<h2>Not transcribed</h2>" + items(P.NOT_TRANSCRIBED)
           + "<h2>Known inconsistencies in the printed tables</h2>" + items(P.KNOWN_INCONSISTENCIES)
           + "<h2>Loss weights: the paper beside this code</h2>" + _df_html(P.loss_weight_agreement()))
    kdsr = ("<h1>KDSR (ICLR 2023): the printed tables</h1>"
            f"<p>From {esc(P.KDSR_SOURCE)}. {esc(P.KDSR_CONVENTIONS)} {esc(P.KDSR_NOT_REPORTED)}.</p>"
            + _paper_pivot(P.kdsr_table().assign(caption=lambda d: d.table.map(P.KDSR_TABLES)))
            + f"<h2>Cost as printed</h2><p>{esc(P.KDSR_FLOP_CAVEAT)}.</p>" + _df_html(P.kdsr_cost().drop(columns="note"))
            + "<h2>KDSR beside PDD on NTIRE20 (both papers' printed numbers)</h2>" + _df_html(P.kdsr_beside_pdd_ntire20()))
    hra = ("<h1>HR-aware fine-tuning (arXiv 2411.16175): the printed tables</h1>"
           f"<p>{esc(P.HR_AWARE_CONVENTIONS)}</p>" + _paper_pivot(P.hr_aware_table())
           + "<h2>The paper's gains over its baseline</h2>" + _df_html(P.hr_aware_paper_gains())
           + "<h2>Its RealESRGAN baseline beside PDD's Tab. 2 (the same printed numbers?)</h2>"
           + _df_html(P.hr_aware_baseline_vs_pdd()))
    return {"paper-pdd.html": ("PDD's printed tables", pdd), "paper-kdsr.html": ("KDSR's printed tables", kdsr),
            "paper-hr-aware.html": ("HR-aware's printed tables", hra)}


def _nb_link(stem: str, pages: dict, res: Path) -> str:
    """Links to the executed copies of notebook ``stem`` in results/ (hand-run variants such as
    ``07_evidence_seeds0-1`` too), else where to run it."""
    found = sorted(p for p in pages if re.fullmatch(rf"results/notebooks/{re.escape(stem)}(_[^/]*)?\.html", p))
    if found:
        return " and ".join(f'<a href="../{p}">{esc(pages[p])}</a>' + ("" if p.endswith(f"/{stem}.html") else
                            f" ({esc(Path(p).stem[len(stem) + 1:])})") for p in found)
    return (f"<code>notebooks/{esc(stem)}.ipynb</code> (no executed copy in <code>results/</code> yet: "
            f"<code>python -m pdd.reproduce {esc(stem[:2])}</code>)")


def _result_links(res: Path, pattern: str) -> str:
    found = sorted(res.glob(f"*/*/{pattern}"))
    if not found:
        return ""
    return ("<p>Results: " + ", ".join(f'<a href="../results/{p.relative_to(res).with_suffix(".html").as_posix()}">'
                                         f"{esc(p.relative_to(res).as_posix())}</a>" for p in found) + ".</p>")


def method_pages(res: Path, pages: dict) -> dict[str, tuple[str, str]]:
    nb = lambda stem: _nb_link(stem, pages, res)  # noqa: E731
    pdd = ("<h1>PDD: pairwise distance distillation</h1>"
           "<p>PDD adapts a super-resolution network to a target camera from that camera's low-resolution photos "
           "X<sup>U</sup> alone. Two networks see every batch: the one being trained, M<sub>S</sub>, and a guide "
           "M<sub>G</sub>. M<sub>S</sub> keeps a supervised loss on labelled bicubic pairs (X<sup>L</sup>, "
           "Y<sup>L</sup>) and gains two regularisers on VGG features of the four predictions "
           "S(X<sup>U</sup>), S(X<sup>L</sup>), G(X<sup>U</sup>), G(X<sup>L</sup>): <b>R<sub>intra</sub></b> asks "
           "the distances between S's real-world and synthetic predictions to look like G's (cross-entropy over "
           "a channel-softmax cross-entropy with G's distances as the target), <b>R<sub>inter</sub></b> asks the change from G to S to be the same on both kinds "
           "of input (compared through Gram matrices); a GAN term acts on S(X<sup>U</sup>). Code: <code>pdd/losses.py</code>, "
           "<code>Trainer.step</code> in <code>pdd/train.py</code>.</p>"
           "<h2>Static version</h2><p>M<sub>S</sub> starts from the bicubic specialist, M<sub>G</sub> is the "
           f"generalist, frozen (paper Fig. 3a): the adapted specialist should beat both. Shown in {nb('03_static')}.</p>"
           "<h2>EMA version</h2><p>Both start from the generalist and M<sub>G</sub> follows M<sub>S</sub> as an "
           "exponential moving average, so the regularisers act through the EMA's lag; the evaluated model is the EMA "
           f"copy. This is the paper's Tab. 2 method. Shown in {nb('04_ema')}.</p>"
           f"<h2>Around them</h2><ul><li>The premise (generalist vs specialist): {nb('02_pretrain_check')}</li>"
           f"<li>The data: {nb('01_data')}</li><li>Ablations: {nb('05_ablations')}</li>"
           f"<li>Feature-space explanation (t-SNE, KL): {nb('06_tsne_kl')}</li>"
           f"<li>Adaptation or drift, against controls: {nb('07_evidence')}</li>"
           f"<li>Your own photos: {nb('08_your_photos')}</li></ul>" + _result_links(res, "methods_seeds*.md"))
    hra = ("<h1>HR-aware self-supervised fine-tuning</h1>"
           "<p>The PDD authors' second way to adapt the same RealESRGAN to a target domain from its LR images alone "
           "(Zhang &amp; Yao, <em>High-Resolution Be Aware!</em>, arXiv 2411.16175), by self-supervision instead of "
           "distillation. Stage A trains, once, a network that reconstructs an LR image from its degradation code and "
           "an HR image; stage B fine-tunes only the SR model on target LR so that its output, put through the frozen "
           "reconstruction, gives back the input LR. A controller scales the degradation code by how good the HR "
           "is, and a regulariser (FAR) aligns Gram descriptors of the image encoder with a frozen encoder's. The paper "
           "releases no code: every open choice is a field of <code>HRAwareConfig</code>, and offline substitutions "
           f"(CLIP RN50, LPIPS) are recorded as deviations. Code: <code>pdd/hr_aware.py</code>. Shown in "
           f"{nb('09_hr_aware')}.</p>" + _result_links(res, "*hr_aware*.md")
           + '<p>The paper\'s printed numbers: <a href="../paper-hr-aware.html">HR-aware tables</a>.</p>')
    kdsr = ("<h1>KDSR: a degradation-aware generalist</h1>"
            "<p>KDSR (Xia et al., ICLR 2023) is a blind SR network whose student encoder estimates, from the LR image "
            "alone, one degradation vector per image that sets the per-image depthwise kernels of every block of the "
            "SR net. The encoder is distilled from a teacher that sees both LR and HR. Its real-world model, KDSR-GAN, "
            "is trained on RealESRGAN's second-order pipeline; for PDD it is a candidate generalist M<sub>G</sub>. "
            f"Code: <code>pdd/kdsr.py</code>, <code>python -m pdd.kdsr_train</code>. Shown in {nb('10_kdsr')}.</p>"
            + _result_links(res, "*kdsr*.md")
            + '<p>The paper\'s printed numbers: <a href="../paper-kdsr.html">KDSR tables</a>.</p>')
    return {"methods/pdd.html": ("PDD (static and EMA)", pdd), "methods/hr-aware.html": ("HR-aware fine-tuning", hra),
            "methods/kdsr.html": ("KDSR", kdsr)}


# ----------------------------------------------------------------------------- the build
def _prepare(out: Path) -> None:
    """An empty ``out``: a folder a previous build wrote (it holds MARKER) is replaced, any
    other non-empty folder is refused."""
    if out.exists():
        if not out.is_dir():
            raise NotADirectoryError(f"--out {out} is a file; give a folder for the site")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise ValueError(f"--out {out} is a non-empty folder that pdd.site did not write; "
                             "give a new or empty folder (the default is site/)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by python -m pdd.site; replaced by the next build\n")


def build(out=ROOT / "site", res=RESULTS, progress: bool = True) -> dict[str, str]:
    """Write the site into ``out`` from ``res`` (results/); returns {page path: title}."""
    from tqdm.auto import tqdm

    from .evaluate import git_commit  # the result records' provenance rule: "-dirty" for uncommitted code

    out, res = Path(out), Path(res)
    executed = sorted(p for p in (res / "notebooks").glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not executed:
        raise FileNotFoundError(f"no executed notebooks under {res / 'notebooks'}: run `make reproduce` first "
                                "(the site shows executed notebooks; it runs none)")
    _prepare(out)
    commit = git_commit()
    (out / "style.css").write_text(CSS)
    pages: dict[str, str] = {}

    def write(rel: str, title: str, body: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(layout(title, body, rel.count("/"), commit))
        pages[rel] = title

    # the mirror of results/: CSV/JSON/PNG as they are, Markdown as HTML
    for f in sorted(res.rglob("*")):
        rel = f.relative_to(res)
        if f.is_dir() or rel.parts[0] in SKIP or f.suffix == ".ipynb" or f.name.startswith("."):
            continue
        dest = out / "results" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".md":
            text = f.read_text()
            write(f"results/{rel.with_suffix('.html').as_posix()}", (text.splitlines() or [f.stem])[0].lstrip("# "),
                  _markdown(text))
        else:
            shutil.copyfile(f, dest)

    # executed notebooks (equations through the site's own MathJax when the package is installed)
    local_mathjax = copy_mathjax(out)
    default = set(json.loads((res / "reproduce.json").read_text()).get("notebooks", {})) \
        if (res / "reproduce.json").exists() else set()
    for path in tqdm(executed, desc="site: notebooks", disable=not progress):
        rel = path.relative_to(res)
        page = f"results/{rel.with_suffix('.html').as_posix()}"
        nb = json.loads(path.read_text())
        if len(rel.parts) > 2:
            readme = path.parent / "README.md"
            what = (f'an older run kept for reference (<a href="README.html">{esc(path.parent.name)}</a>)'
                    if readme.exists() else f"a run kept in {esc(path.parent.name)}/")
        else:
            what = "a notebook of <code>make reproduce</code>" if path.name in default else "run by hand"
        banner = (f"Executed copy of <code>notebooks/{esc(path.name)}</code> — {what}; {_run_label(nb)}. "
                  "Read-only: nothing was re-run to build this page.")
        title, text = notebook_page(path, res, page.count("/"), banner, local_mathjax)
        (out / page).parent.mkdir(parents=True, exist_ok=True)
        (out / page).write_text(text)
        pages[page] = title

    # the notebook index, in order, grouped by run
    body = ["<h1>Executed notebooks</h1>", "<p>Each page is the notebook as <code>make reproduce</code> (or a "
            "hand run with other parameters) executed it; nothing is re-run here.</p>"]
    groups: dict[Path, list[Path]] = {}
    for p in executed:
        groups.setdefault(p.parent, []).append(p)
    for folder, nbs in groups.items():
        if folder == res / "notebooks":
            body.append("<h2>The embedded default</h2>")
        else:
            readme = folder / "README.md"
            head = (readme.read_text().splitlines() or [folder.name])[0].lstrip("# ") if readme.exists() else folder.name
            body.append(f"<h2>Older run: {_inline(head)}</h2>")
            if readme.exists():
                body.append(_markdown("\n".join(readme.read_text().splitlines()[1:])))
        body.append("<ol>")
        for p in nbs:
            page = f"results/{p.relative_to(res).with_suffix('.html').as_posix()}"
            pm = json.loads(p.read_text()).get("metadata", {}).get("papermill", {})
            extra = f" <span class='muted'>({p.stem}; parameters <code>{esc(json.dumps(pm['parameters']))}</code>)</span>" \
                if pm.get("parameters") else f" <span class='muted'>({p.stem})</span>"
            body.append(f'<li><a href="{page}">{esc(pages[page])}</a>{extra}</li>')
        body.append("</ol>")
    ran = {p.stem[:2] for p in executed}
    missing = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if p.stem[:2] not in ran]
    if missing:
        body.append("<h2>Not executed in results/ yet</h2><ul>" + "".join(
            f"<li>{esc(_title(json.loads(p.read_text()), p.stem))} — <code>notebooks/{esc(p.name)}</code></li>"
            for p in missing) + f"</ul><p>Run them with <code>python -m pdd.reproduce "
            f"{' '.join(p.stem[:2] for p in missing)}</code>, then <code>make site</code>.</p>")
    write("notebooks.html", "Executed notebooks", "\n".join(body))

    # results tables and figures
    body = ["<h1>Results tables</h1>", '<p>Every table under <code>results/</code>, per domain and preset, with '
            'its CSV/JSON. <a href="results/README.html">The summary <code>make reproduce</code> wrote</a> leads with '
            "the premise and the claim per setting.</p>"]
    for folder in sorted({p.parent for p in res.glob("*/*/*.md")}):
        rel = folder.relative_to(res).as_posix()
        body.append(f"<h2>{esc(folder.parent.name)} · <code>{esc(folder.name)}</code></h2>")
        gate = folder / "premise.json"
        if gate.exists():
            body.append(f"<p>{esc(json.loads(gate.read_text()).get('sentence', ''))}</p>")
        body.append("<ul>")
        for md in sorted(folder.glob("*.md")):
            files = [f'<a href="results/{rel}/{s.name}">{s.suffix[1:]}</a>' for s in
                     (md.with_suffix(".csv"), md.with_suffix(".json")) if s.exists()]
            body.append(f'<li><a href="results/{rel}/{md.stem}.html">{esc(pages[f"results/{rel}/{md.stem}.html"])}</a>'
                        f" <span class='muted'>{esc(md.name)}{' · ' + ' · '.join(files) if files else ''}</span></li>")
        body.append("</ul>")
    figs = sorted((res / "figures").glob("*.png"))
    if figs:
        body.append("<h2>Figures</h2><p>Extracted from the executed notebooks (default run).</p><div class='gallery'>"
                    + "".join(f'<a href="results/figures/{f.name}"><img src="results/figures/{f.name}" alt="{f.stem}" '
                              f'title="{f.stem}"></a>' for f in figs) + "</div>")
    write("tables.html", "Results tables", "\n".join(body))

    # ours beside the papers
    body = ["<h1>Our numbers beside the paper's</h1>",
            "<p>Our domains are not the paper's test sets: absolute numbers on different images cannot be compared, "
            "the direction and rough size of a change over the same starting model can. The papers' printed tables: "
            '<a href="paper-pdd.html">PDD</a>, <a href="paper-kdsr.html">KDSR</a>, '
            '<a href="paper-hr-aware.html">HR-aware fine-tuning</a>.</p>']
    for md in sorted(res.glob("*/*/*beside_paper*.md")):
        rel = md.relative_to(res)
        body.append(f"<h2>{esc(rel.parts[0])} · <code>{esc(rel.parts[1])}</code> · {esc(md.stem)}</h2>"
                    f'<p class="muted"><a href="results/{rel.with_suffix(".html").as_posix()}">own page</a>'
                    + (f' · <a href="results/{rel.with_suffix(".csv").as_posix()}">csv</a>'
                       if md.with_suffix(".csv").exists() else "") + "</p>"
                    + f'<div class="scroll">{_markdown(md.read_text())}</div>')
    write("paper.html", "Paper beside ours", "\n".join(body))
    for rel, (title, text) in paper_pages().items():
        write(rel, title, text)
    for rel, (title, text) in method_pages(res, pages).items():
        write(rel, title, text)
    write("index.html", "PDD, measured", landing(res, pages))
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.site", description="Build the static site from the committed "
                                 "executed notebooks and results (nothing is executed).")
    ap.add_argument("--out", default=str(ROOT / "site"), help="output folder (default: site/; replaced on rebuild)")
    ap.add_argument("--results", default=str(RESULTS), help="the results folder to read (default: results/)")
    cli.add_debug_flag(ap)
    args = ap.parse_args(argv)
    t0 = time.time()
    pages = build(args.out, args.results)
    print(f"{len(pages)} pages in {args.out} ({time.time() - t0:.1f} s); open {Path(args.out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.site"))
