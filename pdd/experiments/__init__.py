"""The method comparison: generalist, fine-tune control(s), naive distillation, static and EMA
PDD, the same with KDSR as the generalist, and the authors' HR-aware self-supervised fine-tuning,
over seeds and the last checkpoints, on a domain's target test set and on the source protocol.

One module per job, importing downward only:

    catalogue   the rows, the starting models and whole plans as runs (pdd.runs.Run): pure, never trains
    pool        trains what a plan lists (subprocesses, two at a time) or, for a loader, here
    plans       one plan per training notebook (02-07), shared with `make reproduce`
    scoring     per-image metrics of the starting models and the rows' snapshots, cached per run
    verdicts    the computed sentences on the paper's claims (statistics: pdd.stats)
    reports     the written tables and what produced them
    comparison  one call per notebook: compare_methods, starting_models, the loaded starting models

The names notebooks use are importable from here (``from pdd import experiments as E``).
"""
# ruff: noqa: F401 -- the package's public names, re-exported
from .catalogue import (ABLATIONS, GENERALIST, HR_AWARE_DEFAULT, HR_AWARE_ROWS, KDSR_GENERALIST, KDSR_ROWS,
                        METHODS, ROW_SETS, SPECIALIST, all_methods, default_methods, generalist_file,
                        hr_aware_configs, kdsr_generalist_file, kdsr_generalist_runs, method_config, pdd_methods,
                        pretrain_runs, resolve_methods, row_run, row_runs, seed_list, specialist_file,
                        starting_runs, training_plan)
from .comparison import (compare_methods, generalist, hr_aware_sweep, pretrained, specialist, starting_models,
                         train_methods)
from .plans import Plan, notebook_dirs, plan_for, results_root, runs_root, train_plan
from .pool import train_here, train_runs
from .reports import deviation_lines, kdsr_generalist_source, write_evidence
from .scoring import EvalItem, eval_workers, evaluate_items, evaluate_runs, summarize_methods
from .verdicts import (CLAIM_PAIRS, EVIDENCE_COLUMNS, claim_table, claim_verdict, colour_drift_lines,
                       conclusion_header, evidence_conclusions, gan_gate_line, hr_aware_vs_pdd, kdsr_gains,
                       kdsr_verdict, row_gates, run_gates, static_conclusion)
from . import plans  # noqa: F401 -- plans.static_plan etc. for the notebooks
