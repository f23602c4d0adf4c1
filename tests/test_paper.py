"""The paper's numbers (pdd.paper): transcription checked against the Markdown, beside_paper.

The transcription tests re-read the paper's Markdown conversions in ../shared/papers by
their own route (tab-separated rows, cells by position, metric names from the header
cells) and compare every printed string with pdd.paper's; they skip when the files are
absent. The rest needs no files.
"""
import math
import re

import numpy as np
import pandas as pd
import pytest

from pdd import ROOT
from pdd import paper as P

PAPERS = ROOT.parent / "shared" / "papers"


@pytest.fixture(scope="module")
def md():
    files = {k: PAPERS / v for k, v in P.PAPER_FILES.items()}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        pytest.skip(f"paper Markdown not found ({', '.join(missing)}): the transcription checks need ../shared/papers")
    return {k: f.read_text(encoding="utf-8").splitlines() for k, f in files.items()}


CAPTION = re.compile(r"^(\*\*|<b>)Table (\d+):")


def block(lines, n):
    """The tab-separated rows that follow Table n's caption (before any other caption)."""
    start = next(i for i, l in enumerate(lines) if (m := CAPTION.match(l)) and int(m.group(2)) == n)
    rows = []
    for line in lines[start + 1:]:
        if CAPTION.match(line) or line.startswith(("**Fig", "#")):
            break
        if "\t" in line:
            rows.append(line.split("\t"))
        elif rows:
            break
    return rows


def number(cell):
    """The leading number of a cell ('$26.42_{(+1.340)}$' -> '26.42'), None for '-' / empty."""
    clean = re.sub(r"</?u>|</?sub>|\$|_\{|\}", "", cell).strip()
    m = re.match(r"^(\d+(?:\.\d+)?)", clean)
    return m.group(1) if m else None


def delta(cell):
    clean = re.sub(r"</?u>|</?sub>|\$|_\{|\}", "", cell)
    m = re.search(r"\(\s*([+-])\s*(\d+\.\d+)\s*\)", clean)
    return m.group(1) + m.group(2) if m else None


def metric_of(cell):
    """Metric name from a header / row-label cell ('$\\mathrm{SSIM}\\uparrow$' -> 'ssim')."""
    for key, name in (("PSNR", "psnr"), ("SSIM", "ssim"), ("LPIPS", "lpips"), ("NRQM", "nrqm"),
                      ("CLIP", "clipiqa"), ("MUSIQ", "musiq")):
        if key in cell:
            return name
    return None


def printed(table, domain, method, metric):
    sel = P.paper_table(table, domain=domain, method=method, metric=metric)
    assert len(sel) == 1, (table, domain, method, metric, len(sel))
    return sel.loc[0, "printed"]


# --------------------------------------------------------------------------------------
# Spot checks: a few cells, located in the Markdown by row text and column position.

SPOT = [
    # (table, domain, method, metric, doc, row locator, column, printed)
    ("Tab. 2", "Canon", "RealESRGAN + Ours", "psnr", "main", ("RealSR -Canon", -1), 9, "25.94"),
    ("Tab. 2", "Olympus", "FeMaSR", "nrqm", "main", ("-Olympus", +1), 5, "6.2590"),
    ("Tab. 3", "NTIRE20", "SingleFixed", "nrqm", "main", ("SingleFixed", 0), 4, "6.0938"),
    ("Tab. 6", "Nikon", "StableSR", "musiq", "supplementary", ("StableSR\t24.9\t", 0), 6, "57.94"),
    ("Tab. 8", "Canon", "Comp.", "psnr", "supplementary", ("Comp.", 0), 1, "25.98"),
    ("Tab. 9", "NTIRE20", "Alex.", "lpips", "supplementary", ("$\\mathrm{LPIPS}", 0), 3, "0.2882"),
]


@pytest.mark.parametrize("table,domain,method,metric,doc,locator,col,text", SPOT)
def test_spot_cells_match_the_markdown(md, table, domain, method, metric, doc, locator, col, text):
    prefix, offset = locator
    lines = md[doc]
    i = next(i for i, l in enumerate(lines) if l.startswith(prefix))
    cells = lines[i + offset].split("\t")
    assert text in cells[col], f"{text!r} not in the Markdown cell {cells[col]!r} (line {i + offset + 1})"
    assert printed(table, domain, method, metric) == text
    assert P.paper_table(table, domain=domain, method=method, metric=metric).loc[0, "value"] == float(text)


def test_table_1_body_is_absent_from_the_markdown(md):
    """Why Tab. 1 is in NOT_TRANSCRIBED: its caption is followed by no table rows."""
    assert block(md["main"], 1) == []
    assert any(n["table"] == "Tab. 1" for n in P.NOT_TRANSCRIBED)
    assert P.paper_table("Tab. 1").empty


# --------------------------------------------------------------------------------------
# Every transcribed cell, re-read from the Markdown.

T2_DOMAINS = ("NTIRE20", "Canon", "Nikon", "Panasonic", "Olympus")  # row blocks, top to bottom


def parse_tab2(lines):
    rows = block(lines, 2)
    names = [c.strip() for c in rows[0][2:]]
    suffix = [c.strip() for c in rows[1][2:]]
    methods = [f"{n} {s.split(' [')[0]}" if s.startswith("+") else n for n, s in zip(names, suffix)]
    body = rows[2:]
    assert len(body) == 20
    cells, deltas = {}, {}
    for k, r in enumerate(body):
        domain, metric = T2_DOMAINS[k // 4], metric_of(r[1])
        assert metric == ("psnr", "ssim", "lpips", "nrqm")[k % 4]
        for method, c in zip(methods, r[2:], strict=True):
            if number(c) is not None:
                cells[("Tab. 2", domain, method, metric)] = number(c)
                if delta(c) is not None:
                    deltas[(domain, method, metric)] = delta(c)
    return cells, deltas


def parse_rows(rows, cols, table, md_labels=None):
    """Rows 'label, numbers...' with columns ``cols`` [(domain, metric)]; checkmark cells skipped."""
    md_labels = md_labels or {}
    out = {}
    for r in rows:
        label = md_labels.get(r[0].strip(), r[0].strip())
        nums = [number(c) for c in r[1:] if number(c) is not None]
        if len(nums) != len(cols):
            continue  # a header row, or figure debris after Tab. 3
        for (domain, metric), v in zip(cols, nums):
            out[(table, domain, label, metric)] = v
    return out


def parse_all(md):
    main, supp = md["main"], md["supplementary"]
    cells, _ = parse_tab2(main)
    # Tab. 3: header 'Ca|non|NTI|RE20|Olympus' over 'PSNR NRQM' pairs.
    t3 = block(main, 3)
    assert "".join(t3[0][1:5]) == "CanonNTIRE20" and t3[0][5] == "Olympus"
    cols = [(d, metric_of(m)) for d, m in zip(("Canon",) * 2 + ("NTIRE20",) * 2 + ("Olympus",) * 2, t3[1][1:7])]
    cells |= parse_rows(t3[2:6], cols, "Tab. 3", {"$\\ell_1$": "ℓ1"})
    # Tab. 6: 'Dataset ... <domain>' blocks, metric names from the 'Metrics' row.
    domain, metrics = None, None
    for r in block(supp, 6):
        if r[0] == "Dataset":
            domain = next(c for c in r[1:] if c.strip())
        elif r[0] == "Metrics":
            metrics = [metric_of(c) for c in r[1:]]
        else:
            for m, c in zip(metrics, r[1:], strict=True):
                cells[("Tab. 6", domain, r[0], m)] = number(c)
    # Tab. 7: 'Ca|non|NTIRE20' over PSNR NRQM pairs; checkmark columns before.
    t7 = block(supp, 7)
    assert "".join(t7[0][3:5]) == "Canon" and t7[0][5] == "NTIRE20"
    cols = [(d, metric_of(m)) for d, m in zip(("Canon",) * 2 + ("NTIRE20",) * 2, t7[1][3:7])]
    cells |= parse_rows(t7[2:], cols, "Tab. 7")
    # Tab. 8: 'Ca|non|NTI|RE20|P11'; 'P11' is garbled, Olympus by the values (see below).
    t8 = block(supp, 8)
    assert "".join(t8[1][1:5]) == "CanonNTIRE20" and t8[1][5] == "P11"
    cols = [(d, metric_of(m)) for d, m in zip(("Canon",) * 2 + ("NTIRE20",) * 2 + ("Olympus",) * 2, t8[2][1:7])]
    cells |= parse_rows(t8[3:], cols, "Tab. 8")
    # Tab. 9: rows are metrics, columns methods; no dataset named (NTIRE20 by the values).
    t9 = block(supp, 9)
    methods = [{"$\\ell_1$": "ℓ1"}.get(c, c) for c in t9[0][1:]]
    for r in t9[1:]:
        for method, c in zip(methods, r[1:], strict=True):
            cells[("Tab. 9", "NTIRE20", method, metric_of(r[0]))] = number(c)
    return cells


def test_every_transcribed_cell_matches_the_markdown(md):
    parsed = parse_all(md)
    ours = {(r.table, r.domain, r.method, r.metric): r.printed for r in P.paper_table().itertuples()}
    assert set(ours) == set(parsed), (set(ours) ^ set(parsed))
    wrong = {k: (ours[k], parsed[k]) for k in ours if ours[k] != parsed[k]}
    assert not wrong


def test_tab2_printed_deltas_match_the_markdown(md):
    _, parsed = parse_tab2(md["main"])
    df = P.paper_table("Tab. 2")
    ours = {(r.domain, r.method, r.metric): r.printed_delta for r in df.itertuples() if not math.isnan(r.printed_delta)}
    assert set(ours) == set(parsed)
    assert all(ours[k] == float(parsed[k]) for k in ours)
    # The one unreadable subscript is the one listed as not transcribed.
    garbled = df[(df.method.str.endswith("+ Ours")) & df.printed_delta.isna()]
    assert list(zip(garbled.domain, garbled.method, garbled.metric)) == [("Nikon", "BSRGAN + Ours", "psnr")]
    assert any("garbled" in n["reason"] for n in P.NOT_TRANSCRIBED)


def test_loss_weights_match_supplementary_tables_4_and_5(md):
    supp = md["supplementary"]
    t4 = block(supp, 4)
    header = [c.strip("$") for c in t4[0][1:]]
    assert header == ["\\alpha_1", "\\alpha_2", "\\alpha_3", "\\omega_0", "\\omega_{1-2}", "\\omega_3"]
    values = dict(zip(header, (float(c) for c in t4[1][1:]), strict=True))
    w = P.LOSS_WEIGHTS
    assert (w["alpha_1"], w["alpha_2"], w["alpha_3"]) == (values["\\alpha_1"], values["\\alpha_2"],
                                                          values["\\alpha_3"])
    assert w["omega_0"] == values["\\omega_0"]
    assert w["omega_1"] == w["omega_2"] == values["\\omega_{1-2}"]
    assert w["omega_3"] == values["\\omega_3"]
    assert any("\\lambda_3 = 0.01" in line for line in supp)
    t5 = block(supp, 5)
    weights = [[float(c) for c in r[1:] if c.strip()] for r in t5 if r[0] == "Weights"]
    assert weights == [list(w["r_intra_layers"].values()), list(w["r_inter_layers"].values())]
    # Layer names are garbled ('conv2\t2 conv3\t4 ...'); their digits still read in order.
    intra_digits = re.findall(r"\d", "".join(t5[0][1:]))
    assert intra_digits == [d for k in w["r_intra_layers"] for d in re.findall(r"\d", k)]


# --------------------------------------------------------------------------------------
# Internal consistency (no files needed)


def test_keys_unique_and_metric_directions_known():
    df = P.paper_table()
    assert list(df.columns) == P.COLUMNS
    assert not df.duplicated(["table", "domain", "method", "setting", "metric"]).any()
    assert set(df.metric) <= set(P.METRIC_DIRECTION)
    assert (df.better == df.metric.map(P.METRIC_DIRECTION)).all()
    assert set(df.better) <= {"higher", "lower"}
    assert df.value.notna().all() and (df.value == df.printed.astype(float)).all()
    assert set(df.source) <= {"main", "supplementary"}
    assert all(df[df.table == t].source.eq(P.TABLES[t][0]).all() for t in df.table.unique())


def test_counts_per_table():
    counts = P.paper_table().groupby("table").size().to_dict()
    # Tab. 2: 5 domains x 4 metrics x 9 methods, minus DASR's 3 x 4 printed '-'.
    assert counts == {"Tab. 2": 168, "Tab. 3": 24, "Tab. 6": 24, "Tab. 7": 12, "Tab. 8": 18, "Tab. 9": 6}


def _vals(table, method, **kw):
    df = P.paper_table(table, method=method, **kw)
    return dict(zip(zip(df.domain, df.metric), df.value))


def _same(a, b):
    common = set(a) & set(b)
    assert common
    return all(a[k] == b[k] for k in common)


def test_rows_repeated_across_tables_agree():
    t2_re, t2_ours = _vals("Tab. 2", "RealESRGAN"), _vals("Tab. 2", "RealESRGAN + Ours")
    assert _same(_vals("Tab. 3", "Generalist"), t2_re)
    assert _same(_vals("Tab. 3", "Ours"), t2_ours)
    assert _same(_vals("Tab. 6", "Ours"), _vals("Tab. 2", "BSRGAN + Ours"))
    # the bases of Tab. 8's Olympus and Tab. 9's NTIRE20 attributions
    assert _vals("Tab. 8", "Bicubic") == _vals("Tab. 3", "Ours")
    assert _vals("Tab. 8", "Generalist") == _vals("Tab. 3", "Generalist")
    assert _same(_vals("Tab. 9", "Ours"), t2_ours)


def test_tab2_printed_deltas_agree_with_values_except_known():
    df = P.paper_table("Tab. 2")
    base = {"RealESRGAN + Ours": "RealESRGAN", "BSRGAN + Ours": "BSRGAN"}
    known = {(k["domain"], k["method"], k["metric"]) for k in P.KNOWN_INCONSISTENCIES if k["table"] == "Tab. 2"}
    bad = set()
    for r in df[df.printed_delta.notna()].itertuples():
        b = df[(df.method == base[r.method]) & (df.domain == r.domain) & (df.metric == r.metric)].iloc[0]
        decimals = len(r.printed.split(".")[1])
        tol = 10.0 ** -decimals + 5e-4  # two rounded values, a delta printed to >= 3 decimals
        if abs(r.printed_delta - (r.value - b.value)) > tol + 1e-12:
            bad.add((r.domain, r.method, r.metric))
    assert bad == known


def test_paper_table_filters():
    a = P.paper_table("Table 2", domain="RealSR-Canon", metric=["psnr", "lpips"])
    b = P.paper_table(2, domain="canon", metric=("psnr", "lpips"))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 18 and set(a.domain) == {"Canon"}
    assert P.paper_table("Tab. 2", method="RealESRGAN", domain="Nikon", metric="psnr").value.item() == 24.31
    assert P.paper_table(domain="NTIRE20-Valid").domain.eq("NTIRE20").all()
    with pytest.raises(KeyError):
        P.paper_table(colour="red")
    # a copy: editing it leaves the module's data alone
    a.loc[0, "value"] = -1.0
    assert (P.paper_table("Tab. 2", domain="Canon").value > 0).all()


def test_loss_weights_against_our_defaults():
    """Report, not fix: the supplementary and pdd's defaults (official code) differ only in ω3."""
    agree = P.loss_weight_agreement()
    stated = agree[agree.paper.notna()]
    disagree = stated[~stated.agree.astype(bool)]
    assert list(disagree.name) == ["omega_3"], disagree.to_string()
    row = disagree.iloc[0]
    assert (row.paper, row.ours) == (0.001, 0.01)
    unstated = set(agree[agree.paper.isna()].name)
    assert unstated == set(P.LOSS_WEIGHTS_NOT_STATED)


# --------------------------------------------------------------------------------------
# beside_paper


@pytest.fixture()
def ours():
    nan = math.nan
    df = pd.DataFrame([
        {"model": "generalist", "test set": "target", "psnr": 24.50, "ssim": 0.7700, "lpips": nan, "nrqm": nan,
         "niqe": 5.0, "psnr_cc": 24.9},
        {"model": "EMA PDD (EMA weights)", "test set": "target", "psnr": 26.00, "ssim": 0.7700, "lpips": 0.2500,
         "nrqm": nan, "niqe": 4.0, "psnr_cc": 26.1},
        {"model": "EMA PDD (EMA weights)", "test set": "source", "psnr": 30.00, "ssim": 0.9, "lpips": 0.1,
         "nrqm": nan, "niqe": 3.0, "psnr_cc": 30.0},
        {"model": "naive distillation", "test set": "target", "psnr": 25.00, "ssim": 0.7600, "lpips": nan,
         "nrqm": nan, "niqe": 4.5, "psnr_cc": 25.1},
    ])
    df.attrs["unavailable"] = {"nrqm": "URLError: no network"}
    return df


def _cell(out, model, metric):
    sel = out[(out.model == model) & (out.metric == metric)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_beside_paper_deltas_and_directions(ours):
    out = P.beside_paper(ours, "Tab. 2", domain="RealSR-Canon")
    assert set(out["test set"][out.model != ""]) == {"target"}  # target rows chosen by default
    g = _cell(out, "generalist", "psnr")
    assert (g["paper method"], g.paper) == ("RealESRGAN", 24.74)
    assert g.delta == pytest.approx(24.50 - 24.74) and g["better?"] == "no"
    e = _cell(out, "EMA PDD (EMA weights)", "psnr")
    assert (e["paper method"], e.paper) == ("RealESRGAN + Ours", 25.94)
    assert e.delta == pytest.approx(0.06) and e["better?"] == "yes"
    s = _cell(out, "EMA PDD (EMA weights)", "ssim")
    assert s.delta == pytest.approx(0.7700 - 0.7733) and s["better?"] == "no"
    lp = _cell(out, "EMA PDD (EMA weights)", "lpips")  # lower is better
    assert lp.delta == pytest.approx(0.2500 - 0.2516) and lp["better?"] == "yes"


def test_beside_paper_unavailable_and_unmatched_stay_visible(ours):
    out = P.beside_paper(ours, "Tab. 2", domain="Canon")
    for model in ("generalist", "EMA PDD (EMA weights)", "naive distillation"):
        n = _cell(out, model, "nrqm")
        assert n.note.startswith("unavailable") and "URLError" in n.note
        assert math.isnan(n.ours) and math.isnan(n.delta) and n["better?"] == ""
    lp = _cell(out, "generalist", "lpips")
    assert lp.note == "unavailable" and math.isnan(lp.ours) and lp.paper == 0.2607
    nd = _cell(out, "naive distillation", "psnr")
    assert nd.ours == 25.0 and math.isnan(nd.paper) and "no matching row" in nd.note
    nq = _cell(out, "generalist", "niqe")
    assert nq.ours == 5.0 and math.isnan(nq.paper) and "not reported in Tab. 2" in nq.note
    # the paper's other rows follow, ours empty
    dan = out[(out["paper method"] == "DAN") & (out.metric == "psnr")].iloc[0]
    assert dan.model == "" and dan.paper == 26.67 and math.isnan(dan.ours) and dan.note == "not in our table"
    assert not out[(out.model == "") & (out["paper method"].isin(["RealESRGAN", "RealESRGAN + Ours"]))].shape[0]
    md = P.to_markdown(out)
    assert "nan" not in md.lower() and "| unavailable |" in md
    assert len(P.beside_paper(ours, "Tab. 2", domain="Canon", include_paper_only=False)) == 3 * 5


def test_beside_paper_options(ours, tmp_path):
    src = P.beside_paper(ours, 3, domain="olympus", test_set="source", metrics=("psnr", "nrqm", "psnr_cc"))
    e = _cell(src, "EMA PDD (EMA weights)", "psnr")
    assert (e["paper method"], e.paper, e["test set"]) == ("Ours", 27.40, "source")
    assert "not reported in Tab. 3" in _cell(src, "EMA PDD (EMA weights)", "psnr_cc").note
    custom = P.beside_paper(ours, "Tab. 2", domain="Olympus", method_map={"naive distillation": "DASR"})
    dasr = _cell(custom, "naive distillation", "psnr")
    assert math.isnan(dasr.paper) and "not printed in Tab. 2" in dasr.note  # DASR '-' on DRealSR
    assert "no matching row" in _cell(custom, "generalist", "psnr").note  # a given map replaces the default
    typo = P.beside_paper(ours, "Tab. 2", domain="Canon", method_map={"generalist": "Real-ESRGAN"})
    assert "no row 'Real-ESRGAN'" in _cell(typo, "generalist", "psnr").note
    # a single-domain table needs no domain; a 'method' column works like 'model'
    t9 = P.beside_paper(ours.rename(columns={"model": "method"}), "Tab. 9")
    assert _cell(t9, "EMA PDD (EMA weights)", "lpips").paper == 0.2475
    with pytest.raises(ValueError, match="several domains"):
        P.beside_paper(ours, "Tab. 2")
    with pytest.raises(ValueError, match="no domain"):
        P.beside_paper(ours, "Tab. 3", domain="Nikon")
    with pytest.raises(ValueError, match="no transcribed values"):
        P.beside_paper(ours, "Tab. 1", domain="NTIRE20")
    paths = P.write_beside_paper(src, tmp_path / "beside" / "tab3")
    assert [p.suffix for p in paths] == [".md", ".csv"]
    text = paths[0].read_text()
    assert "Tab. 3" in text and "Olympus" in text and "| model |" in text
    back = pd.read_csv(paths[1])
    assert len(back) == len(src)
    np.testing.assert_allclose(back.delta.to_numpy(float), src.delta.to_numpy(float), equal_nan=True)


def test_default_method_map_labels_exist():
    for table in ("Tab. 2", "Tab. 3", "Tab. 6", "Tab. 7", "Tab. 8", "Tab. 9"):
        labels = set(P.paper_table(table).method)
        assert set(P.default_method_map(table).values()) <= labels, table
    assert P.default_method_map("Tab. 2")["EMA PDD (EMA weights)"] == "RealESRGAN + Ours"
    assert P.default_method_map("Tab. 7")["static PDD (EMA weights)"] == "Ours"


# --------------------------------------------------------------------------------------
# gains_beside_paper: differences, for domains the paper does not report


def test_gains_beside_paper_differences_by_hand(ours):
    rows = {"EMA PDD (EMA weights)": ("Tab. 2", "RealESRGAN + Ours", "RealESRGAN")}
    out = P.gains_beside_paper(ours, rows, our_domain="Synth-Defocus")
    psnr = out[out.metric == "psnr"].set_index("paper domain")
    # ours: 26.00 - 24.50 on the target rows (the source row is ignored)
    assert np.allclose(psnr["ours Δ"], 1.5)
    # the paper's printed Tab. 2, Canon: 25.94 - 24.74
    assert psnr.loc["Canon", "paper Δ"] == pytest.approx(1.20)
    assert list(psnr.index) == ["NTIRE20", "Canon", "Nikon", "Panasonic", "Olympus"]
    assert set(psnr["same direction?"]) == {"yes"}
    ssim = out[(out.metric == "ssim") & (out["paper domain"] == "Canon")].iloc[0]
    assert ssim["ours Δ"] == 0.0 and ssim["same direction?"] == "tie"
    # lpips: our generalist could not compute it, so there is no difference, only a note
    lp = out[out.metric == "lpips"]
    assert lp["ours Δ"].isna().all() and (lp.note == "unavailable in our run").all()
    assert (lp["same direction?"] == "").all() and lp["paper Δ"].notna().all()
    # niqe is ours only
    nq = out[out.metric == "niqe"].iloc[0]
    assert nq["ours Δ"] == pytest.approx(-1.0) and "not reported in Tab. 2" in nq.note


def test_gains_beside_paper_ablation_rows_and_errors(ours):
    df = ours.replace({"model": {"naive distillation": "R_intra only", "EMA PDD (EMA weights)": "EMA PDD"}})
    out = P.gains_beside_paper(df, {"R_intra only": P.ABLATION_ROWS["R_intra only"]}, our_baseline="EMA PDD")
    canon = out[(out.metric == "psnr") & (out["paper domain"] == "Canon")].iloc[0]
    assert canon["ours Δ"] == pytest.approx(25.00 - 26.00)
    a, full = (P.paper_table("Tab. 7", domain="Canon", method=m, metric="psnr").value.iloc[0] for m in ("a.", "Ours"))
    assert canon["paper Δ"] == pytest.approx(a - full) and a - full > 0  # R_intra alone scored higher there
    assert canon["same direction?"] == "no"  # ours went down
    with pytest.raises(ValueError, match="baseline"):
        P.gains_beside_paper(df, {"R_intra only": P.ABLATION_ROWS["R_intra only"]}, our_baseline="nope")
    for our_row, (table, label, base) in P.ABLATION_ROWS.items():
        labels = set(P.paper_table(table).method)
        assert {label, base} <= labels, (our_row, table)
