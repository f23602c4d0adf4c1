"""The comparison's computed verdicts: sentences drawn from paired per-image differences
with cluster-bootstrap CIs (``pdd.stats``), never written by hand. The premise gate (02) and
the GAN gate of every run with a discriminator lead every later notebook's conclusions;
perceptual (NIQE) sentences are drawn only from rows whose runs all pass the GAN gate, and
where PSNR and colour-corrected PSNR disagree the verdict says how much is a colour shift."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..runs import Run
from .catalogue import GENERALIST, HR_AWARE_DEFAULT, HR_AWARE_ROWS, KDSR_GENERALIST, KDSR_ROWS, SPECIALIST


# (method, the models it is compared with): the adapted specialist against both starting models
# and its control; EMA PDD against the generalist and its control.
CLAIM_PAIRS = (("static PDD", (SPECIALIST, GENERALIST, "specialist finetune control")),
               ("EMA PDD", (GENERALIST, "finetune control")),
               ("naive distillation", (GENERALIST,)),
               # the same with KDSR as M_G, and against the RRDBNet generalist's rows
               (KDSR_GENERALIST, (GENERALIST,)),
               ("static PDD, KDSR generalist", (SPECIALIST, KDSR_GENERALIST, GENERALIST, "static PDD")),
               ("EMA PDD, KDSR generalist", (KDSR_GENERALIST, "finetune control, KDSR generalist", "EMA PDD")))


def claim_table(per_image: pd.DataFrame, metrics=("psnr", "niqe"), sides=("target", "source"),
                n_boot: int = 2000, cluster: str = "image") -> pd.DataFrame:
    """Paired per-image differences with cluster-bootstrap CIs for ``CLAIM_PAIRS``: "adapted
    specialist vs specialist vs generalist vs control", on the target and the source.
    ``cluster="photo"`` resamples whole photos instead of tiles (``pdd.stats.clusters``)."""
    from ..stats import paired_difference

    present = set(per_image.method)
    spec = SPECIALIST if SPECIALIST in present else "finetune control"  # cpu: the control IS the specialist
    rows = []
    for method, bases in CLAIM_PAIRS:
        for base in bases:
            base = spec if base == SPECIALIST else base
            if method not in present or base not in present or base == method:
                continue
            for m in metrics:
                if m in per_image.columns and per_image[m].notna().any():
                    rows += [paired_difference(per_image, method, base, side, m, n_boot=n_boot, cluster=cluster)
                             for side in sides]
    return pd.DataFrame(rows).drop_duplicates(subset=["method", "baseline", "test set", "metric"])


def claim_verdict(per_image: pd.DataFrame, test_set: str = "target", source: str = "source",
                  n_boot: int = 2000, gates: dict | None = None) -> list[str]:
    """Sentences, computed from paired per-image differences with cluster-bootstrap CIs, on
    the paper's claim: the adapted specialist (static PDD, Fig. 3a) beats BOTH starting
    models on the target without losing the specialist's source quality; EMA PDD beats the
    generalist; each beats the control trained with the same supervised loss and no
    distillation (else a gain is supervised fine-tuning, not distillation).

    ``gates`` ({row: passed}, ``row_gates``): a perceptual (NIQE) sentence involving a row
    whose runs did not all pass the GAN gate is withheld, said so; PSNR sentences stay. Rows
    not in ``gates`` (no discriminator) are not gated; None gates nothing."""
    from ..stats import paired_difference

    present = set(per_image.method)
    spec = SPECIALIST if SPECIALIST in present else "finetune control"  # cpu: the control IS the specialist
    out = []

    def cmp(m, base, side=test_set, metric="psnr"):
        r = paired_difference(per_image, m, base, side, metric, n_boot=n_boot)
        unit = " dB" if metric.startswith("psnr") else ""
        return r, f"{r['difference']:+.2f}{unit} [{r['lo']:+.2f}, {r['hi']:+.2f}] vs the {base} ({r['verdict']})"

    if "static PDD" in present:
        vs_s, t_s = cmp("static PDD", spec)
        vs_g, t_g = cmp("static PDD", GENERALIST)
        holds = vs_s["verdict"] == "better" and vs_g["verdict"] == "better"
        line = f"static PDD (the adapted specialist), PSNR on {test_set}: {t_s}, {t_g}"
        if "specialist finetune control" in present:
            line += ", " + cmp("static PDD", "specialist finetune control")[1]
        out.append(line + f" -> the paper's claim (beats both starting models) {'HOLDS' if holds else 'does NOT hold'} here.")
        out.append(f"static PDD on the {source} protocol (the specialist's sharpness kept?): {cmp('static PDD', spec, source)[1]}.")
    if "EMA PDD" in present:
        vs_g, t_g = cmp("EMA PDD", GENERALIST)
        vs_c, t_c = cmp("EMA PDD", "finetune control") if "finetune control" in present else (None, "no control run")
        holds = vs_g["verdict"] == "better" and vs_c is not None and vs_c["verdict"] == "better"
        out.append(f"EMA PDD, PSNR on {test_set}: {t_g}, {t_c} -> the paper's direction "
                   f"{'holds' if holds else 'does NOT hold'} here.")
    out += kdsr_verdict(per_image, test_set, source, n_boot)
    for m in (r for r in HR_AWARE_ROWS if r in present):
        # its paper's claim: the adapted RealESRGAN+ beats RealESRGAN+ (the generalist) on the target
        vs_g, t_g = cmp(m, GENERALIST)
        others = [cmp(m, o)[1] for o in ("finetune control", "EMA PDD") if o in present]
        out.append(f"{m}, PSNR on {test_set}: " + ", ".join([t_g] + others) + " -> its paper's direction (a gain over "
                   f"the generalist) {'holds' if vs_g['verdict'] == 'better' else 'does NOT hold'} here.")
    if "naive distillation" in present and per_image.get("niqe") is not None and per_image["niqe"].notna().any():
        for m in ("EMA PDD", "static PDD"):
            if m in present:
                failed = gate_failures(gates, ("naive distillation", m))
                if failed:
                    out.append(f"naive distillation vs {m}, NIQE on {test_set}: " + withheld(failed))
                    continue
                r, t = cmp("naive distillation", m, metric="niqe")
                said = {"worse": "as the paper says", "better": "NOT as the paper says"}.get(r["verdict"], "unresolved")
                out.append(f"naive distillation NIQE on {test_set}: {t} (the paper: naive is perceptually worse): {said}.")
    return out


def kdsr_verdict(per_image: pd.DataFrame, test_set: str = "target", source: str = "source",
                 n_boot: int = 2000) -> list[str]:
    """Does a degradation-aware generalist help distillation? Sentences from paired per-image
    differences with cluster-bootstrap CIs: KDSR against the RRDBNet generalist; static PDD with
    KDSR as M_G against the same run with the RRDBNet generalist (same specialist, only G
    differs); EMA PDD's gain over its own starting model with KDSR minus that gain with the
    RRDBNet generalist (paired per seed, checkpoint and image). [] without KDSR rows."""
    from ..stats import gain_difference, paired_difference

    present = set(per_image.method)
    if KDSR_GENERALIST not in present:
        return []
    spec = SPECIALIST if SPECIALIST in present else "finetune control"

    def text(r, unit=" dB"):
        return f"{r['difference']:+.2f}{unit} [{r['lo']:+.2f}, {r['hi']:+.2f}] ({r['verdict']})"

    def cmp(m, base, side=test_set):
        return text(paired_difference(per_image, m, base, side, "psnr", n_boot=n_boot))

    out = [f"KDSR generalist vs the generalist, PSNR: {cmp(KDSR_GENERALIST, GENERALIST)} on the {test_set}, "
           f"{cmp(KDSR_GENERALIST, GENERALIST, source)} on the {source} protocol."]
    m = "static PDD, KDSR generalist"
    if m in present:
        r = paired_difference(per_image, m, spec, test_set, "psnr", n_boot=n_boot)
        k = paired_difference(per_image, m, KDSR_GENERALIST, test_set, "psnr", n_boot=n_boot)
        holds = r["verdict"] == "better" and k["verdict"] == "better"
        line = (f"{m}, PSNR on {test_set}: {text(r)} vs the {spec}, {text(k)} vs the KDSR generalist -> beats both "
                f"starting models: {'yes' if holds else 'no'}")
        if "static PDD" in present:
            line += f"; KDSR instead of the RRDBNet generalist as M_G: {cmp(m, 'static PDD')}"
        out.append(line + ".")
    m, control = "EMA PDD, KDSR generalist", "finetune control, KDSR generalist"
    if m in present:
        own = paired_difference(per_image, m, KDSR_GENERALIST, test_set, "psnr", n_boot=n_boot)
        line = (f"{m}, PSNR over its start (the KDSR generalist): {text(own)} on the {test_set}, "
                f"{cmp(m, KDSR_GENERALIST, source)} on the {source} protocol")
        vs_c = paired_difference(per_image, m, control, test_set, "psnr", n_boot=n_boot) if control in present else None
        if vs_c is not None:
            line += f"; {text(vs_c)} vs its control"
        if "EMA PDD" in present:
            d = gain_difference(per_image, (m, KDSR_GENERALIST), ("EMA PDD", GENERALIST), test_set, "psnr", n_boot)
            line += f"; its {test_set} gain minus EMA PDD's over the RRDBNet generalist: {text(d)} -> "
            if d["verdict"] == "better" and vs_c is not None and vs_c["verdict"] != "better":
                line += ("a KDSR start gives EMA PDD a larger gain, but its fine-tune control gains as much: "
                         "supervised training, not distillation, so degradation awareness does not help PDD here")
            elif d["verdict"] == "better":
                line += "a degradation-aware generalist helps EMA PDD here (no control run to rule out plain fine-tuning)" \
                    if vs_c is None else "a degradation-aware generalist helps EMA PDD here"
            else:
                line += ("a degradation-aware generalist hurts EMA PDD here" if d["verdict"] == "worse" else
                         "a degradation-aware generalist makes no measurable difference to EMA PDD here")
        out.append(line + ".")
    return out


def run_gates(rows: list[Run], upto: int | None = None) -> dict[str, dict]:
    """``pdd.stats.gan_gate`` of every run with a discriminator, by run label (``<row> s<seed>``),
    over its log up to iteration ``upto`` (None: all of it). A run with D but no training log yet
    has not shown that D separates: it fails."""
    from ..stats import GAN_GATE_MIN_SEPARATION, gan_gate

    gates = {}
    for r in rows:
        if r.config.has_discriminator:
            gates[r.label] = gan_gate(r.dir, upto=upto) if (r.dir / "log.csv").exists() else {
                "passed": False, "mean": np.nan, "lo": np.nan, "hi": np.nan, "threshold": GAN_GATE_MIN_SEPARATION,
                "verdict": "GAN gate failed: no training log"}
    return gates


def row_gates(rows: list[Run]) -> dict[str, bool]:
    """{row name: whether every run of that row (each seed) passed the GAN gate}, for rows with a
    discriminator; rows without one (HR-aware fine-tuning, a GAN-free control) are left out."""
    gates = run_gates(rows)
    out: dict[str, bool] = {}
    for r in rows:
        if r.label in gates and r.row:
            out[r.row] = out.get(r.row, True) and bool(gates[r.label]["passed"])
    return out


def gate_failures(gates: dict | None, rows) -> list[str]:
    """The rows among ``rows`` whose GAN gate failed (none when ``gates`` is None)."""
    return [r for r in rows if gates and gates.get(r) is False]


def withheld(failed: list[str]) -> str:
    return (f"withheld: the GAN gate failed for {', '.join(failed)} (perceptual conclusions are drawn only from "
            "runs whose D separated real from fake).")


def gan_gate_line(rows: list[Run], upto: int | None = None) -> str | None:
    """One line: the GAN gate's rule and threshold, how many runs with D passed, and each run's
    separation with its CI, over each log up to ``upto`` (None: all of it); None without such runs."""
    from ..stats import GAN_GATE_RULE

    gates = run_gates(rows, upto)
    if not gates:
        return None
    passed = sum(bool(g["passed"]) for g in gates.values())
    def one(k, g):
        if g["lo"] != g["lo"]:  # NaN: fewer logged points than batches, no CI
            return f"{k} {g['mean']:+.3f} failed (only {g['n']} logged points: not enough to judge)"
        return f"{k} {g['mean']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}] {'passed' if g['passed'] else 'failed'}"

    runs = "; ".join(one(k, g) for k, g in gates.items())
    until = "" if upto is None else f" up to iteration {upto:,}"
    return (f"GAN gate (fixed before any PDD number was seen: {GAN_GATE_RULE}{until}): passed {passed} of {len(gates)} "
            f"runs with D — {runs}.")


def conclusion_header(results_dir, domain: str, preset: str, rows: list[Run] = ()) -> list[str]:
    """The first lines of every later notebook's conclusions: the premise gate written by 02,
    then the GAN gate of every run with a discriminator (the paper's perceptual claims rest
    on the GAN term; perceptual sentences below use only rows that pass)."""
    from ..stats import premise_banner

    line = gan_gate_line(rows)
    return [premise_banner(results_dir, domain, preset)] + ([line] if line else [])


def static_conclusion(table: pd.DataFrame, metric: str = "psnr") -> list[str]:
    """Notebook 03's sentences from its one-seed ``evaluate.compare`` table (rows named
    "generalist …", "specialist …", "static PDD …"): mean differences, no CIs (04/07 have them)."""
    def val(prefix, side):
        rows = table[table.model.str.startswith(prefix) & table["test set"].str.startswith(side)]
        return float(rows[metric].iloc[0]) if len(rows) else np.nan

    t = {m: val(m, "target") for m in ("generalist", "specialist", "static PDD")}
    src = val("static PDD", "source") - val("specialist", "source")
    both = t["static PDD"] > t["specialist"] and t["static PDD"] > t["generalist"]
    return [f"static PDD (the adapted specialist), {metric.upper()} on the target: "
            f"{t['static PDD'] - t['specialist']:+.2f} vs the specialist, {t['static PDD'] - t['generalist']:+.2f} vs the "
            f"generalist -> {'above both starting models' if both else 'NOT above both starting models'} in this one run "
            f"(means; paired CIs in 04/07).",
            f"On the source protocol: {src:+.2f} vs the specialist (the paper: its sharpness is kept)."]


def colour_drift_lines(per_image: pd.DataFrame, threshold_db: float = 0.3, baseline: str = GENERALIST) -> list[str]:
    """One sentence per method (not the ``baseline``) and test set where the mean paired PSNR
    difference to the baseline and the mean paired colour-corrected PSNR (``psnr_cc``)
    difference differ by more than ``threshold_db``: that much of the PSNR difference is a
    colour shift, which colour correction (supplementary Eq. 13) removes. With the per-channel
    shift columns (``pdd.evaluate.colour_shift``) it also gives the mean shift, the method's and
    the baseline's, in 8-bit levels."""
    from ..evaluate import SHIFT_COLUMNS
    from ..stats import baseline_values

    if not {"psnr", "psnr_cc"} <= set(per_image.columns) or baseline not in set(per_image.method):
        return []
    shifts = set(SHIFT_COLUMNS) <= set(per_image.columns)
    out = []
    for (method, side), g in per_image[per_image.method != baseline].groupby(["method", "test set"], sort=False):
        d = np.nanmean(g["psnr"].values - baseline_values(per_image, baseline, side, g, "psnr"))
        d_cc = np.nanmean(g["psnr_cc"].values - baseline_values(per_image, baseline, side, g, "psnr_cc"))
        if not abs(d - d_cc) > threshold_db:
            continue
        gap = d_cc - d
        if gap > 0:  # colour correction takes away part of the method's deficit (or adds to its gain)
            what = ("most of the loss is a colour shift" if d < 0 and gap >= -d / 2 else
                    f"{gap:.2f} dB of the PSNR difference is a colour shift")
        else:
            what = f"its colours are closer to the HR's than the {baseline}'s: {-gap:.2f} dB of its PSNR is colour"
        line = (f"{method} on the {side}: PSNR {d:+.2f} dB but colour-corrected PSNR {d_cc:+.2f} dB vs the {baseline}: "
                f"{what}")
        if shifts:
            base = per_image[(per_image.method == baseline) & (per_image["test set"] == side)]
            level = lambda f: ", ".join(f"{c[-1].upper()} {f[c].mean():+.1f}" for c in SHIFT_COLUMNS)  # noqa: E731
            line += f" (mean shift {level(g)} levels; the {baseline}'s {level(base)})"
        out.append(line + ".")
    return out


# notebook 07's gain table: per method and metric, target/source gains and the adaptation gain with its CI
EVIDENCE_COLUMNS = ["method", "metric", "n", "target gain", "target gain verdict", "source gain", "source gain verdict",
                    "adaptation gain", "adaptation gain lo", "adaptation gain hi", "adaptation gain verdict"]


def evidence_conclusions(results_dir, domain: str, preset: str, rows: list[Run], per_image: pd.DataFrame,
                         gains: pd.DataFrame, n_boot: int = 2000) -> list[str]:
    """Notebook 07's computed conclusions: the premise gate and the GAN gate, the claim (adapted
    specialist vs both starting models and its control), where PSNR and colour-corrected PSNR
    disagree, then per method the target, source and adaptation gains (PSNR, and NIQE for rows
    that pass the GAN gate) and which methods adapt (adaptation-gain CI above 0)."""
    gates = row_gates(rows)
    lines = (conclusion_header(results_dir, domain, preset, rows) + claim_verdict(per_image, n_boot=n_boot, gates=gates)
             + colour_drift_lines(per_image))
    for _, r in gains[gains.metric.isin(["psnr", "niqe"])].iterrows():
        failed = gate_failures(gates, [r.method]) if r.metric == "niqe" else []
        if failed:
            lines.append(f"{r.method}, {r.metric}: " + withheld(failed))
            continue
        lines.append(f"{r.method}, {r.metric}: target {r['target gain']:+.3f}, source {r['source gain']:+.3f}, "
                     f"adaptation {r['adaptation gain']:+.3f} [{r['adaptation gain lo']:+.3f}, "
                     f"{r['adaptation gain hi']:+.3f}] -> {r['adaptation gain verdict']}")
    psnr = gains[gains.metric == "psnr"]
    above = psnr["adaptation gain verdict"] == "better"
    # a positive adaptation gain with a LOSS on the target is degradation that hit the source
    # harder, not adaptation: named apart
    adapted = psnr[above & (psnr["target gain verdict"] != "worse")].method.tolist()
    degraded = psnr[above & (psnr["target gain verdict"] == "worse")].method.tolist()
    lines.append("Methods with a PSNR adaptation gain whose CI excludes 0, without a loss on the target: "
                 + (", ".join(adapted) or "none") + ".")
    if degraded:
        lines.append("Adaptation gain above 0 only because the source lost more than the target (both worse than "
                     "the generalist): " + ", ".join(degraded) + ".")
    return lines


def hr_aware_vs_pdd(per_image: pd.DataFrame, row: str = HR_AWARE_DEFAULT, n_boot: int = 2000,
                    gates: dict | None = None) -> list[str]:
    """Notebook 09's computed conclusion: the HR-aware row against EMA PDD and the fine-tune
    control on the target test set, PSNR and NIQE, paired per (seed, image) with bootstrap CIs.
    ``gates`` ({row: passed}, ``row_gates``): a NIQE comparison with a row whose GAN gate failed
    is withheld (the HR-aware row has no D and is not gated)."""
    from ..stats import paired_difference

    lines = []
    for metric in ("psnr", "niqe"):
        if metric not in per_image or per_image[metric].isna().all():
            lines.append(f"{metric.upper()}: not computed (unavailable offline, or not asked for).")
            continue
        for other in ("EMA PDD", "finetune control", GENERALIST):
            if other not in set(per_image.method) or row not in set(per_image.method):
                continue
            failed = gate_failures(gates, [other]) if metric == "niqe" else []
            if failed:
                lines.append(f"{row} vs {other}, {metric.upper()} on the target: {withheld(failed)}")
                continue
            d = paired_difference(per_image, row, other, "target", metric, n_boot=n_boot)
            lines.append(f"{row} vs {other}, {metric.upper()} on the target: {d['difference']:+.3f} "
                         f"[{d['lo']:+.3f}, {d['hi']:+.3f}] -> {d['verdict']}")
    return lines


def kdsr_gains(per_image: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """The KDSR rows' target, source and adaptation gains against the KDSR generalist (their own
    M_G), as ``stats.adaptation_gains`` computes them against the RRDBNet generalist; an
    empty frame without KDSR rows."""
    from ..stats import adaptation_gains

    rows = per_image[per_image.method.isin([KDSR_GENERALIST, *KDSR_ROWS])]
    if KDSR_GENERALIST not in set(rows.method) or len(set(rows.method)) < 2:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    return adaptation_gains(rows, baseline=KDSR_GENERALIST, n_boot=n_boot, seed=0)
