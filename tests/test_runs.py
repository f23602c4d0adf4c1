"""pdd.runs, the row catalogue and the plans: the run directories and snapshot paths every plan
produces are the ones recorded before pdd/runs.py existed (tests/data/run_plans.json, written
by the code at 0725db9), planning touches no file and trains nothing, and the modules import
downward only."""
import ast
import json
import os
from pathlib import Path

import pytest

import pdd
from pdd import reproduce, runs
from pdd.experiments import catalogue as C
from pdd.experiments import plans
from pdd.runs import Run

ROOT = pdd.ROOT
RECORDING = json.loads((Path(__file__).parent / "data" / "run_plans.json").read_text())
START_FIELDS = ("init_s", "init_g", "init_m", "rec_net", "teacher", "init")


def _rel(p):
    if p is None:
        return None
    s, r = str(p), str(ROOT) + "/"
    return s[len(r):] if s.startswith(r) else s


def _record(job: Run) -> dict:
    c = job.config
    d = {"type": type(c).__name__, "out": _rel(c.out), "iters": c.iters, "preset": c.preset, "seed": c.seed,
         "mode": getattr(c, "mode", None), "stage": getattr(c, "stage", None), "final": _rel(job.final)}
    d.update({f: _rel(getattr(c, f)) for f in START_FIELDS if getattr(c, f, None)})
    return d


def _recorded(case: str):
    value = RECORDING["cases"][case]
    ids = lambda xs: [RECORDING["records"][i] for i in xs]  # noqa: E731
    if case.startswith("files"):
        return value
    return {k: ids(v) for k, v in value.items()} if isinstance(value, dict) else ids(value)


def _plan_parts(starts, pool, rows):
    return {"starts": [_record(x) for x in starts], "pool": [_record(x) for x in pool], "rows": [_record(x) for x in rows]}


@pytest.fixture
def no_released_kdsr():
    """The recording was made without the released KDSRS-GAN in the hub cache (the cpu preset
    then trains a small KDSR): a machine holding it plans other runs."""
    if C.released_kdsr("cpu"):
        pytest.skip("KDSRS-GAN is in the hub cache here: the cpu preset's KDSR rows use it")


@pytest.mark.parametrize("preset", ["tiny", "scratch", "cpu"])
def test_the_comparisons_runs_are_the_recorded_ones(preset, no_released_kdsr):
    for domain in ("Synth-ISO", "Synth-Defocus"):
        for seeds in ([0], [0, 1]):
            for it, pit in ((None, None), (12, 12)):
                case = f"jobs {preset} {domain} {seeds} iters={it} pretrain={pit}"
                got = _plan_parts(*C.training_plan(preset, domain, seeds, "all", "runs", None, it, pit))
                assert got == _recorded(case), case
    got = _plan_parts(*C.training_plan(preset, "Synth-ISO", [0], None, "runs", variants=C.ABLATIONS))
    assert got == _recorded(f"ablations {preset}")
    # a changed config runs under its own name (a digest of the change), HR-aware rows too
    assert [_record(C.row_run("EMA PDD", preset, "Synth-ISO", 1, "runs", overrides={"ema_decay": 0.99}))] == \
        _recorded(f"override {preset}")
    a, b = C.hr_aware_configs("HR-aware fine-tuning", preset, "Synth-ISO", 0, "runs", overrides={"lambda_ft": 0.1})
    assert [_record(Run(a)), _record(Run(b))] == _recorded(f"hr override {preset}")
    assert [_rel(C.generalist_file(preset, "Synth-ISO", "runs", 1)),
            _rel(C.specialist_file(preset, "Synth-ISO", "runs", 1)),
            _rel(C.kdsr_generalist_file(preset, "Synth-ISO", "runs", 1))] == _recorded(f"files {preset}")


@pytest.mark.parametrize("smoke", ["0", "1"])
def test_make_reproduces_pool_is_the_recorded_one(smoke, monkeypatch, no_released_kdsr):
    monkeypatch.setenv("PDD_SMOKE", smoke)
    notebooks = sorted((ROOT / "notebooks").glob("0[2-7]_*.ipynb"))
    for params in ({}, {"compare_rows": "pdd", "methods": "pdd"}):
        got = [_record(j) for j in reproduce.chain_jobs(notebooks, params)]
        assert got == _recorded(f"chain smoke={smoke} {params}")


def test_the_naming_rule():
    assert runs.slug("static PDD, KDSR generalist") == "static-pdd--kdsr-generalist"
    assert runs.row_dir("r", "tiny", "D", "EMA PDD", 3) == Path("r/tiny/D/ema-pdd_s3")
    # the digest: sha1 of the sorted JSON of the change, 8 hex digits
    import hashlib
    want = hashlib.sha1(b'{"a": 1, "b": "x"}').hexdigest()[:8]
    assert runs.digest({"b": "x", "a": 1}) == want
    assert runs.row_dir("r", "p", "D", "HR-aware fine-tuning", 0, {"b": "x", "a": 1}, tag="transductive") == \
        Path(f"r/p/D/hr-aware-fine-tuning-transductive-{want}_s0")
    assert runs.pretrain_dir("r", "scratch", "D", "generalist", 1, None, 1000).name == "pretrained-generalist_s1"
    assert runs.pretrain_dir("r", "scratch", "D", "generalist", 1, 1000, 1000).name == "pretrained-generalist_s1"
    assert runs.pretrain_dir("r", "scratch", "D", "specialist", 0, 12, 1000).name == "pretrained-specialist-12it_s0"
    assert runs.snapshot_path("r/x_s0", 300) == Path("r/x_s0/weights/net_g_000300.pth")
    assert runs.snapshot_iteration("r/x_s0/weights/net_g_001234.pth") == 1234
    assert runs.run_of("r/x_s0/weights/net_g_000300.pth") == Path("r/x_s0")
    assert runs.run_of("RealESRGAN_x4plus") is None


def test_a_run_reads_its_state_from_disk(tmp_path):
    from pdd.config import make_config

    start = tmp_path / "pretrained-generalist_s0"
    cfg = make_config("tiny", "ema", out=str(tmp_path / "ema-pdd_s0"), iters=20,
                      init_s=str(runs.snapshot_path(start, 300)), init_g=str(runs.snapshot_path(start, 300)))
    run = Run(cfg, row="EMA PDD")
    assert run.needs == {str(start)} and run.module == "pdd.train" and run.label == "EMA PDD s0"
    assert not run.finished and run.snapshots() == []
    for i in (10, 20):
        run.snapshot(i).parent.mkdir(parents=True, exist_ok=True)
        run.snapshot(i).write_bytes(b"")
    assert run.finished and [runs.snapshot_iteration(s) for s in run.snapshots()] == [10, 20]


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []


def test_planning_everything_touches_no_file_and_trains_nothing(tmp_path, monkeypatch):
    """The catalogue and the plans only name runs: planning every notebook of `make reproduce`
    (both sizes, every row set) and every preset's comparison creates nothing and starts no
    trainer or job."""
    from pdd import train
    from pdd.experiments import pool

    def refuse(*a, **k):
        raise AssertionError("planning trained something")

    monkeypatch.setattr(train.LoopTrainer, "__init__", refuse)
    monkeypatch.setattr(pool, "train_runs", refuse)
    monkeypatch.setattr(pool, "train_here", refuse)
    repo_runs = _files(ROOT / "runs")
    notebooks = sorted((ROOT / "notebooks").glob("0[2-7]_*.ipynb"))
    for smoke in (False, True):
        monkeypatch.setenv("PDD_SMOKE", "1" if smoke else "0")
        for rows in ("default", "pdd", "all"):
            params = {"runs_dir": str(tmp_path / "runs"), "compare_rows": rows, "methods": rows}
            assert reproduce.chain_jobs(notebooks, params)
            for key in plans.PLANS:
                assert plans.plan_for(key, {**params, "patch_check": True, "train_naive": True}, smoke).runs
    for preset in ("tiny", "scratch", "cpu"):
        C.training_plan(preset, "Synth-ISO", [0, 1], "all", tmp_path / "runs")
        C.training_plan(preset, "Synth-ISO", [0], None, tmp_path / "runs", variants=C.ABLATIONS)
    assert _files(tmp_path) == []
    assert _files(ROOT / "runs") == repo_runs


def test_the_plans_defaults_are_the_notebooks_parameters_cells():
    """plans.DEFAULTS stands for each training notebook's parameters cell (so that `make
    reproduce` never executes one): executed here, at both sizes, they agree."""
    for key in plans.PLANS:
        nb = next((ROOT / "notebooks").glob(f"{key}_*.ipynb"))
        cell = next(c for c in json.loads(nb.read_text())["cells"]
                    if "parameters" in c.get("metadata", {}).get("tags", []))
        for smoke in ("0", "1"):
            before = os.environ.get("PDD_SMOKE")
            os.environ["PDD_SMOKE"] = smoke
            try:
                ns: dict = {}
                exec(compile("".join(cell["source"]), nb.name, "exec"), ns)  # noqa: S102 -- the test's own check
            finally:
                os.environ.pop("PDD_SMOKE") if before is None else os.environ.__setitem__("PDD_SMOKE", before)
            values = {k: v for k, v in ns.items() if not k.startswith("_") and k != "os"}
            assert values == plans.DEFAULTS[key](smoke == "1"), (key, smoke)


def test_a_plan_names_what_its_notebook_shows(tmp_path):
    p = plans.static_plan("tiny", "Synth-ISO", runs_dir=tmp_path, train_naive=True, smoke=True)
    assert p["static PDD"].row == "static PDD" and p["naive distillation"].row == "naive distillation"
    assert [j.dir.name for j in p.runs[:2]] == ["pretrained-generalist_s0", "pretrained-specialist_s0"]
    # under cpu static PDD adapts the fine-tune control: the plan trains it (its S) before it
    p = plans.static_plan("cpu", "Synth-Defocus", runs_dir=tmp_path, smoke=False)
    assert [j.dir.name for j in p.runs] == ["finetune-control_s0", "static-pdd_s0"]
    assert p["static PDD"].needs == {str(p.runs[0].dir)}
    with pytest.raises(ValueError, match="no training plan"):
        plans.plan_for("08")


# ------------------------------------------------------------------ layering

# Lower layers never import higher ones (DEVELOPERS.md: archs/losses -> data/weights/config ->
# train -> evaluate -> experiments/analysis/paper -> reproduce).
LAYERS = [
    {"pdd", "runs", "cli", "procenv", "devices", "imageops", "stats", "photos", "archs", "losses"},
    {"degradations", "kdsr_degradations", "weights", "kdsr", "config", "data", "sr_models"},
    {"train"},
    {"kdsr_train", "hr_aware", "evaluate", "backends"},
    {"experiments", "analysis", "paper", "viz", "upscale", "export", "adapt"},
    {"site", "reproduce"},
]
# inside pdd.experiments: each module imports only those before it
EXPERIMENTS_ORDER = ["catalogue", "pool", "plans", "scoring", "verdicts", "reports", "length", "decisions", "test_pool",
                     "comparison",
                     "__init__", "__main__"]


def _imports() -> dict[str, set[str]]:
    """Every pdd module -> the pdd modules it imports (at module level or inside a function)."""
    files = {}
    for p in (ROOT / "pdd").rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in files.items():
        package = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    deps.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in files else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else module
    top = "pdd" if module == "pdd" else top
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} has no layer in tests/test_runs.py: place it")


def test_modules_import_downward_only_and_never_in_a_cycle():
    graph = _imports()
    assert graph["pdd.losses"] <= {"pdd.archs"} and not graph["pdd.archs"]
    assert not [d for d in graph["pdd.train"] if d.startswith("pdd.experiments")]
    upward = [(m, d) for m, deps in graph.items() for d in deps if _layer(d) > _layer(m)]
    assert upward == []
    inside = [(m, d) for m, deps in graph.items() if m.startswith("pdd.experiments") for d in deps
              if d.startswith("pdd.experiments")]
    order = lambda m: EXPERIMENTS_ORDER.index(m.split(".")[-1] if m != "pdd.experiments" else "__init__")  # noqa: E731
    assert [(m, d) for m, d in inside if order(d) >= order(m)] == []
    # no cycle among all imports, the lazy ones inside functions included
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [m, d])}"
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_shown_writes_this_machines_paths_relative_to_the_project_or_home():
    from pdd.runs import shown

    root, home = str(pdd.ROOT), str(Path.home())
    text = f"{root}/runs/a_s0/weights/x.pth; cwd {root}; {home}/.cache/pdd/vgg.pth"
    assert shown(text) == "runs/a_s0/weights/x.pth; cwd .; ~/.cache/pdd/vgg.pth"
    assert not shown(root + "extra/y").startswith(".extra")   # a sibling folder is not the project
    assert shown("no path here") == "no path here"
