"""The comparison's written results: what the rows' runs recorded of their deviations and of
the KDSR generalist they used, and the Markdown/CSV/JSON files of notebooks 04, 05 and 07."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import hr_aware, kdsr_train
from ..runs import Run, shown
from .catalogue import HR_AWARE_ROWS, uses_kdsr
from .verdicts import EVIDENCE_COLUMNS, claim_table


def pdd_row_config(rows: list[Run]):
    """The config a table's record describes (precision, patch, batch): the first PDD-trainer row."""
    return next((r.config for r in rows if r.row not in HR_AWARE_ROWS), rows[0].config)


def kdsr_generalist_source(rows: list[Run]) -> str | None:
    """What the KDSR rows' generalist is, in words: the released file, or the companion-trained
    small KDSR (read from its student run's config.json) and that it is NOT the released model."""
    c = next((r.config for r in rows if uses_kdsr(r.config)), None)
    if c is None:
        return None
    f = Path(c.init_s if c.s_arch == "kdsr" else c.init_g)
    meta = f.parents[1] / "config.json" if f.suffix == ".pth" else None
    if meta is None or not meta.exists():
        return f"KDSR generalist: {f} (a KDSR student file; the released KDSRS-GAN when named so)"
    k = json.loads(meta.read_text())["config"]
    return "KDSR generalist: " + kdsr_train.NOT_RELEASED.format(
        variant=k["variant"], iters=f"{k['iters']} (teacher) + {k['iters']} (student)",
        data=k.get("hr_dir") or f"the clean photos of {k['domain']}") + f" [{f}]"


def deviation_lines(rows: list[Run]) -> list[str]:
    """Markdown lines naming what the HR-aware rows' runs changed from their paper (offline
    fallbacks, the reduced stage A, ...), read from each run's config.json, and which KDSR the
    KDSR rows used; [] without such rows."""
    kdsr_line = kdsr_generalist_source(rows)
    head = ["", kdsr_line] if kdsr_line else []
    seen: dict[str, list[str]] = {}
    for r in rows:
        if r.row in HR_AWARE_ROWS and (r.dir / "config.json").exists():
            own = hr_aware.run_deviations(r.dir)
            for d in own:
                if d.startswith("(stage A) ") and d[len("(stage A) "):] in own:
                    continue  # stage A's copy of a fallback stage B also uses
                seen.setdefault(d, []).append(r.label)
    if not seen:
        return head
    return head + ["", "Deviations of the HR-aware rows from their paper (recorded by each run):"] + \
        [f"- {d} [{', '.join(rs)}]" for d, rs in seen.items()]


def write_comparison(stem, result: dict, preset: str, domain: str, seeds, last_k: int, metrics: dict,
                     generalist: str) -> None:
    """``<stem>.csv`` (the summary), ``<stem>_per_image.csv``, ``<stem>.md`` (table, computed
    verdict, deviations, what produced it) and ``<stem>.json`` of ``comparison.compare_methods``."""
    from ..evaluate import markdown_table, metric_info, result_record, unavailable_note

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows, summary, verdict = result["runs"], result["summary"], result["verdict"]
    c0 = pdd_row_config(rows)
    sources = {}
    for r in rows:
        meta = r.dir / "config.json"
        if meta.exists():
            sources[r.label] = json.loads(meta.read_text()).get("sources")
    record = result_record(preset=preset, domain=domain, seeds=list(seeds), last_k_checkpoints=last_k,
                           iters={r.row: r.config.iters for r in rows},
                           precision="bf16 autocast (training); fp32 evaluation" if c0.bf16 else "fp32",
                           patch=c0.patch,
                           batch=f"{c0.batch}" if all(r.row in HR_AWARE_ROWS for r in rows) else f"{c0.batch_l}+{c0.batch_u}",
                           generalist=generalist, kdsr_generalist=kdsr_generalist_source(rows), sources=sources,
                           metrics=metric_info(metrics), train_wall_s=round(result["train_s"]),
                           eval_wall_s=round(result["eval_s"]))
    summary.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.4f")
    result["per_image"].to_csv(stem.parent / (stem.name + "_per_image.csv"), index=False, float_format="%.4f")
    cols = ["method", "test set", "runs"] + [c for c in summary.columns
                                             if c.split(" ")[0] in ("psnr", "psnr_cc", "ssim", "niqe") and "std" not in c]
    md = [f"# Methods on {domain} ({preset} preset)", "",
          f"Mean over {len(seeds)} seed(s) x last {last_k} checkpoint(s) of the image-mean metric; "
          "`gain` = mean paired per-image difference to the generalist. PSNR/SSIM on Y (YCbCr); "
          "`psnr_cc` after colour correction (supplementary Eq. 13).", "",
          markdown_table(summary[cols].round(4)), "", "## Verdict (computed from the numbers)", ""]
    md += [f"- {v}" for v in verdict]
    note = unavailable_note(metrics)
    md += deviation_lines(rows)
    md += ["", f"Produced by: commit {record['git_commit']}, preset {preset}, seeds {list(seeds)}, "
               f"precision {record['precision']}, generalist {record['generalist']}."]
    if note:
        md.append(note)
    stem.with_suffix(".md").write_text(shown("\n".join(md) + "\n"))
    stem.with_suffix(".json").write_text(shown(json.dumps({"record": record, "summary": summary.to_dict("records"),
                                                           "verdict": verdict}, indent=2, default=str)))


def photo_level_section(per_image: pd.DataFrame | None, n_boot: int) -> list[str]:
    """Markdown: the claim table again with CIs that resample whole photos (all tiles, seeds and
    checkpoints of a photo together, ``pdd.stats.clusters``), and on how many photos they rest;
    [] when the scores come from one photo (or are not at hand)."""
    from ..evaluate import markdown_table
    from ..stats import photo_of

    if per_image is None or per_image.empty:
        return []
    target = per_image[per_image["test set"] == "target"] if "target" in set(per_image["test set"]) else per_image
    photos = sorted({photo_of(n) for n in target["name"]})
    if len(photos) < 2:
        return []
    tiles = target["name"].nunique()
    return ["## Photo-level CIs", "",
            f"The claim table again, its CIs resampling the {len(photos)} photos the {tiles} target test tiles were "
            f"cut from ({', '.join(photos)}), all tiles, seeds and checkpoints of a photo together: tiles of one "
            f"photo share its content, so the tile-level CIs above count them as more independent evidence than they "
            f"are. With only {len(photos)} photos a percentile bootstrap has few distinct resamples and understates "
            "the spread (it can come out narrower than the tile-level CI): read these CIs for their direction, not as "
            "sharper evidence.", "",
            markdown_table(claim_table(per_image, n_boot=n_boot, cluster="photo").round(4)), ""]


def write_evidence(out, domain: str, preset: str, seeds, last_k: int, n_boot: int, gains: pd.DataFrame,
                   claims: pd.DataFrame, lines: list[str], rows: list[Run], metrics: dict, generalist_source: str,
                   kdsr: pd.DataFrame | None = None, per_image: pd.DataFrame | None = None) -> Path:
    """``out/07_evidence_seeds<seeds>.csv`` (the gains) and ``.md`` (gains, claim table, the KDSR
    rows' gains over the KDSR generalist when given, the claim table with photo-level CIs, the
    computed conclusions, and what produced them). ``per_image`` (for the photo-level CIs):
    None reads the ``methods_seeds<seeds>_per_image.csv`` that ``compare_methods`` wrote in
    ``out`` (its scores rounded to 4 decimals). Returns the Markdown path."""
    from ..evaluate import markdown_table, metric_info, result_record, unavailable_note

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c0 = pdd_row_config(rows)
    record = result_record(preset=preset, domain=domain, seeds=list(seeds), last_k_checkpoints=last_k, n_boot=n_boot,
                           ci="95% percentile bootstrap over images (cluster: seeds x checkpoints of an image together)",
                           metrics=metric_info(metrics), patch=c0.patch,
                           precision="bf16 autocast + channels_last" if c0.bf16 else "fp32", generalist=generalist_source)
    stem = out / ("07_evidence_seeds" + "-".join(map(str, seeds)))
    if per_image is None:
        scores = out / ("methods_seeds" + "-".join(map(str, seeds)) + "_per_image.csv")
        per_image = pd.read_csv(scores) if scores.exists() else None
    gains.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.4f")
    md = [f"# Adaptation or drift ({domain}, {preset})", "", markdown_table(gains[EVIDENCE_COLUMNS].round(4)), "",
          "## Adapted specialist vs specialist vs generalist vs control", "", markdown_table(claims.round(4)), ""]
    if kdsr is not None and len(kdsr):
        md += ["## KDSR rows against the KDSR generalist", "", markdown_table(kdsr[EVIDENCE_COLUMNS].round(4)), ""]
    md += photo_level_section(per_image, n_boot)
    md += ["## Conclusion (computed)", ""] + [f"- {line}" for line in lines] + deviation_lines(rows) + [
          "", f"Produced by: commit {record['git_commit']}, seeds {list(seeds)}, last {last_k} checkpoints, "
              f"{record['ci']}; precision {record['precision']}, LR patch {record['patch']}; generalist: "
              f"{record['generalist']}.", unavailable_note(metrics) or ""]
    stem.with_suffix(".md").write_text(shown("\n".join(md) + "\n"))
    return stem.with_suffix(".md")


# ------------------------------------------------------------------ how fair the committed verdict is (issue 25)

PAPER_EMA_ITERS = 100_000   # the paper's EMA PDD schedule (its static PDD: 50K)


def test_pool_line(path, link: str) -> str:
    """A sentence from ``pdd.experiments.test_pool``'s premise.json: whether the premise gate,
    resampling whole photos, holds on the built-in photos and on the test pool's, per stage of
    the starting models, on PSNR and on colour-corrected PSNR. "" where the file is absent."""
    path = Path(path)
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    pool = data.get("record", {}).get("pool")
    checks = [c for c in data.get("checks", []) if c.get("cluster") == "photo"]
    state = lambda c: "holds with margin" if c["with_margin"] else "holds" if c["holds"] else "does NOT hold"  # noqa: E731
    parts = []
    for metric, name in (("psnr", "PSNR"), ("psnr_cc", "colour-corrected PSNR")):
        for stage in dict.fromkeys(c["stage"] for c in checks):
            mine = {c["test set"]: c for c in checks if c.get("metric", "psnr") == metric and c["stage"] == stage}
            if "embedded" in mine:
                parts.append(f"on {name}, {stage} models: {state(mine['embedded'])} on the built-in photos"
                             + (f", {state(mine[pool])} on {pool}'s" if pool in mine else ""))
    if not parts:
        return ""
    where = f" and on the {pool} pool of photographs" if pool else " (the pool of photographs was not installed)"
    return (f"The premise on more pictures ({link}: the starting models scored on the built-in test photos{where}, "
            f"95% CIs resampling whole photos): " + "; ".join(parts) + ". A verdict on the built-in photos is a "
            "verdict about those few photos where the two differ.")


def _verdict_of(study: Path) -> str:
    """The computed verdict's sentences of a written length study (``length.write_length_study``), run together."""
    text = study.read_text()
    if "## Verdict (computed from the numbers)" not in text:
        return ""
    verdict = text.split("## Verdict (computed from the numbers)", 1)[-1].split("\n\n", 2)[1]
    return " ".join(v[2:] for v in verdict.splitlines() if v.startswith("- "))


def fair_test_lines(folder, link_base: str = "", study_verdict: bool = True) -> list[str]:
    """Markdown sentences for the top of results/README.md and the landing page, read from a
    setting's committed files (``results/<domain>/<preset>``): under which length and starting
    models the comparison's verdict was reached, what the fair set-up's decisions were
    (``fair_setup/decisions.json``, pdd.experiments.decisions), and, under the from-scratch
    presets, the length study's computed verdict (``length_study.md``, notebook 11) or that it
    has not been run (``study_verdict=False``: a link to it, no figures: the landing page shows
    only numbers it sources). Links are relative to results/, behind ``link_base``. [] where the
    setting has no method comparison."""
    import ast

    from ..config import make_config

    folder = Path(folder)
    rel = f"{folder.parent.name}/{folder.name}"

    def link(name: str) -> str:
        return f"[{rel}/{name}]({link_base}{rel}/{name})"

    comparisons = sorted(folder.glob("methods_seeds*.json"), key=lambda p: (len(p.stem.split("-")), p.stem))
    if not comparisons:
        return []
    committed = json.loads(comparisons[-1].read_text())
    record, verdict_lines = committed.get("record", {}), committed.get("verdict", [])
    iters = record.get("iters")
    if isinstance(iters, str):
        try:
            iters = ast.literal_eval(iters)
        except (ValueError, SyntaxError):
            iters = None
    pdd_iters = sorted({v for k, v in (iters or {}).items() if k in ("static PDD", "EMA PDD")})
    preset = record.get("preset", folder.name)
    warm_up = make_config(preset, "ema").warmup_d_iters if preset in ("paper", "cpu", "scratch", "tiny") else None
    lines = []
    if pdd_iters:
        n = pdd_iters[-1]
        start = ("starting models pretrained here with pixel losses alone" if preset in ("scratch", "tiny") else
                 "the released RealESRGAN_x4plus as the generalist")
        lines.append(f"Under which conditions the verdict above holds: PDD runs of {n:,} iterations (the paper "
                     f"trains EMA PDD for {PAPER_EMA_ITERS:,}), {warm_up} of them D-only "
                     f"(the official warm-up is 300), {start}; the lines on D above say in how many runs it "
                     f"separated real from fake. It is the fairest verdict these numbers allow, and it says nothing "
                     f"about longer training.")
    if any("NIQE" in v for v in verdict_lines) and not any(v.startswith("GAN gate") for v in verdict_lines):
        lines.append("The NIQE sentences above were written before the GAN gate existed (issue 25), so they are not "
                     "withheld where D did not separate: they are not evidence of a perceptual effect. A rerun of "
                     "the comparison withholds them run by run.")
    decisions = folder / "fair_setup" / "decisions.json"
    if decisions.exists():
        d = json.loads(decisions.read_text())
        lines.append(f"The fair set-up's decisions, made on the starting models and the fine-tune control alone "
                     f"({link('fair_setup/decisions.md')}): {d['stage_sentence']} {d['d_sentence']}")
        for key, nth in (("r4", "A second"), ("r5", "A third")):   # the later candidate stages, in the rules' order
            for later in sorted(decisions.parent.glob("decisions-*.json")):
                choice = json.loads(later.read_text()).get(key)
                if not choice:
                    continue
                # the landing page (study_verdict=False) shows no number it does not source: no weights or lengths
                said = choice["sentence"] if study_verdict else (
                    "it was taken: the fair set-up's GAN stage is the candidate" if choice["taken"] else
                    "it was not taken, so R1's stage stays (why: its decisions)")
                target = "fair_setup/" + later.with_suffix(".md").name
                where = link(target) if study_verdict else f"[{key.upper()}'s decisions]({link_base}{rel}/{target})"
                lines.append(f"{nth} candidate for the GAN stage, its rule written before its runs ({where}): {said}")
    pool_line = test_pool_line(folder / "test_pool" / "premise.json", link("test_pool/premise.md"))
    if pool_line:
        lines.append(pool_line)
    study, interim = folder / "length_study.md", folder / "length_study_interim.md"
    if study.exists():
        lines.append(f"The length study under the fair set-up (notebook 11, {link('length_study.md')}): "
                     + (_verdict_of(study) if study_verdict else
                        "its verdict per length, computed from the numbers, is there."))
    elif interim.exists():
        lines.append(f"The length study under the fair set-up is still training; an interim look at the lengths every "
                     f"row has reached ({link('length_study_interim.md')}; notebook 11 gives the study's result when "
                     f"the runs finish): " + (_verdict_of(interim) if study_verdict else
                                              "its interim verdict, computed from the numbers, is there."))
    elif preset in ("scratch", "tiny"):
        lines.append("The length study under the fair set-up (notebook 11: starting models with a GAN stage, the "
                     "official 300 D-only warm-up, 3,000 training iterations, checkpoints in between) has not been "
                     "run; `make length-study` runs it and resumes after any stop.")
    return lines
