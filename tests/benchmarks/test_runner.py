"""The benchmark runner at tiny sizes: every suite runs through the one door, and results.json follows the schema.

No timing is asserted anywhere: timings are measurements, not properties of the code. The ``all_tiny``
fixture (conftest.py) runs ``python -m benchmarks all --tiny`` once for every benchmark test.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import solvers
from benchmarks.__main__ import build_parser, main
from benchmarks.suites import SUITE_MODULES, SUITES, load_suite
from benchmarks.suites.common import RunContext, Table, validate_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("suite", list(SUITE_MODULES))
def test_each_suite_writes_results_with_every_column(all_tiny, suite):
    out, _ = all_tiny
    doc = json.loads((out / suite / "results.json").read_text())
    # the readers need the dev extra to write their files; without it the suite says so in a note
    expected = {} if suite == "readers" and not doc["tables"] else load_suite(suite).TABLES
    validate_results(doc, expected)
    for key in ("cpu", "cores", "python", "torch", "numpy", "date"):
        assert doc["machine"][key], key
    assert doc["suite"] == suite
    assert doc["command"].startswith("python -m benchmarks all --tiny")
    assert doc["machine"]["torch"] == torch.__version__
    assert (out / suite / "report.md").read_text().strip()
    for plot in doc["plots"]:
        assert (out / suite / plot).stat().st_size > 0


def test_help_lists_every_benchmark():
    text = build_parser().format_help()
    for name in [*SUITES, "all", "render"]:
        assert f"    {name}" in text, name


def test_suite_help_shows_its_own_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["variants", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--jobs" in out and "--quick" in out and "variants options" in out


def test_no_suite_imports_another_suite():
    modules = set(SUITE_MODULES.values())
    for name, module in SUITE_MODULES.items():
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not (imported & (modules - {module})), name
        assert not any(m.startswith("benchmarks.") and m not in ("benchmarks.problems", "benchmarks.suites.common")
                       for m in imported), (name, imported)


def test_python_m_benchmarks_is_the_front_door(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "ddp", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ddp options" in proc.stdout and "--warmup" in proc.stdout
    doc = main(["data", "--tiny", "--datasets", "shapes", "--out", str(tmp_path), "--no-progress"])
    assert doc["command"] == f"python -m benchmarks data --tiny --datasets shapes --out {tmp_path} --no-progress"
    assert [r["generator"] for r in doc["tables"]["generators"]["rows"]] == ["shapes"]


def test_bad_suite_option_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["solver-perf", "--tiny", "--only", "az", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--only takes letters of abcdef" in capsys.readouterr().err


def test_suite_option_below_its_bound_is_a_clear_error(tmp_path, capsys):
    for args, message in ((["profile", "--warmup", "-1"], "--warmup must be >= 0"),
                          (["variants", "--jobs", "0"], "--jobs must be >= 1")):
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--tiny", "--out", str(tmp_path)])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_every_suite_has_its_section_of_the_methods_page():
    text = (ROOT / "docs" / "benchmarks" / "methods.md").read_text()
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == list(SUITES)
    for name in SUITES:
        assert load_suite(name).__doc__.rstrip().endswith(f"Method: docs/benchmarks/methods.md#{name}"), name


def test_combined_document(all_tiny):
    out, doc = all_tiny
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["suite"] == "all" and set(on_disk["suites"]) == set(SUITE_MODULES)
    assert set(doc["suites"]) == set(SUITE_MODULES)
    report = (out / "report.md").read_text()
    assert all(f"### {name}" in report for name in SUITE_MODULES)


def test_solvers_rows_cover_every_family_and_library(all_tiny):
    out, _ = all_tiny
    rows = json.loads((out / "solvers" / "results.json").read_text())["tables"]["solves"]["rows"]
    assert {r["family"] for r in rows} == {"iterate", "anderson", "broyden"}
    for r in rows:
        assert r["nfe_ours"] > 0 and r["nfe_torchdeq"] > 0 and r["nfe_scipy"] > 0
    # Known answers: the H-equation's mean is exact for the discrete system.
    h = [r for r in rows if r["problem"].startswith("H-equation")]
    assert h and all(r["check_ours"] < 1e-6 for r in h)


def test_backward_fidelity_and_memory_are_sane(all_tiny):
    out, _ = all_tiny
    tables = json.loads((out / "backward" / "results.json").read_text())["tables"]
    tanh = [r for r in tables["fidelity"]["rows"] if r["problem"].startswith("tanh")]
    assert all(-1.0 <= r["cosine"] <= 1.0 + 1e-9 for r in tanh)
    # On a contraction Neumann(k) approaches the exact gradient as k grows.
    by_k = {r["k"]: r["cosine"] for r in tanh if r["mode"] == "neumann"}
    assert by_k[max(by_k)] >= by_k[min(by_k)]
    cost = tables["cost"]["rows"]
    unrolled = sorted((r["T"], r["saved_bytes"]) for r in cost
                      if r["mode"] == "unrolled" and r["problem"].startswith("tanh"))
    onestep = {r["saved_bytes"] for r in cost if r["mode"] == "onestep" and r["problem"].startswith("tanh")}
    assert unrolled[-1][1] > unrolled[0][1] and len(onestep) == 1  # linear in T vs constant


def test_variants_runs_train_and_measure(all_tiny):
    out, _ = all_tiny
    doc = json.loads((out / "variants" / "results.json").read_text())
    runs = doc["tables"]["runs"]["rows"]
    assert {r["variant"] for r in runs} >= {"vanilla", "IN"}
    assert all(r["steps_done"] == r["steps"] and not r["diverged"] for r in runs)
    assert doc["settings"]["grad_clip"] > 0
    assert all(r["rho_T_median"] > 0 for r in doc["tables"]["trajectory"]["rows"])


def _numbers(doc: dict) -> tuple[dict, dict]:
    """The tables without wall times, and the settings that come from training (the clip and its pilot)."""
    tables = {name: [{c: v for c, v in row.items() if c != "seconds"} for row in tab["rows"]]
              for name, tab in doc["tables"].items()}
    return tables, {k: doc["settings"][k] for k in ("grad_clip", "pilot_grad_norms", "plan")}


def test_variants_with_two_jobs_gives_the_numbers_of_one(all_tiny, tmp_path):
    out, _ = all_tiny
    one = json.loads((out / "variants" / "results.json").read_text())  # --jobs 1 (in-process), one thread
    two = main(["variants", "--tiny", "--jobs", "2", "--threads", "1", "--out", str(tmp_path), "--no-progress"])
    assert one["settings"]["jobs"] == 1 and two["settings"]["jobs"] == 2
    assert one["settings"]["threads_per_job"] == two["settings"]["threads_per_job"] == 1
    assert _numbers(two) == _numbers(one)
    assert [r["run"] for r in two["tables"]["runs"]["rows"]] == [r["run"] for r in one["tables"]["runs"]["rows"]]


def test_cpu_plan_is_the_variants_default_and_takes_overrides(tmp_path):
    suite = load_suite("variants")
    assert suite.DEFAULT_SIZE == "cpu"
    ctx = RunContext(size=suite.DEFAULT_SIZE, seeds=None, device=torch.device("cpu"), out=tmp_path, command="")
    plan = suite.plan_for(ctx)
    assert (plan.data, plan.config, plan.resolution, plan.batch_size, plan.lr) == ("shapes", "cpu-small", 32, 16, 6e-4)
    assert (plan.steps, plan.main_iters, plan.seeds, plan.iter_counts) == (1500, 7, 3, (1, 3, 7, 15))
    assert set(plan.variants) == {"vanilla", "IN", "BN", "BB", "IB"} and plan.warmup_steps == 200
    shorter = suite.plan_for(RunContext(size="cpu", seeds=1, device=torch.device("cpu"), out=tmp_path, command="",
                                        overrides={"steps": 600}))
    assert (shorter.steps, shorter.seeds, shorter.warmup_steps) == (600, 1, 200)  # the warm-up is not rescaled
    assert suite.PLANS["full"].warmup_steps == suite.PLANS["full"].steps // 10


def test_table_rejects_rows_missing_a_column():
    tab = Table("t", ("a", "b"))
    tab.add(a=1, b=2)
    with pytest.raises(KeyError):
        tab.add(a=1)


def test_validate_results_catches_schema_breaks(all_tiny):
    out, _ = all_tiny
    doc = json.loads((out / "solvers" / "results.json").read_text())
    broken = json.loads(json.dumps(doc))
    del broken["machine"]
    with pytest.raises(ValueError):
        validate_results(broken)
    broken = json.loads(json.dumps(doc))
    broken["tables"]["solves"]["rows"][0].pop("nfe_ours")
    with pytest.raises(ValueError):
        validate_results(broken)


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="cuda"):
        main(["solvers", "--tiny", "--device", "cuda", "--out", str(tmp_path)])


def test_solver_perf_update_section_compares_eager_and_compiled_updates(tmp_path):
    from benchmarks.suites.solver_perf_suite import anderson_update

    main(["solver-perf", "--tiny", "--only", "f", "--out", str(tmp_path), "--no-progress"])
    rows = json.loads((tmp_path / "results.json").read_text())["tables"]["update"]["rows"]
    assert [(r["B"], r["d"], r["backend"]) for r in rows] == [(4, 32, "aot_eager")]
    assert rows[0]["max_abs_diff"] < 1e-5 and rows[0]["f_us"] > 0 and rows[0]["compiled_us"] > 0
    # the timed update is Anderson's step: x_new = f(x) - dF gamma with gamma the least-squares fit of g by dG
    gen = torch.Generator().manual_seed(0)
    fx, x, g_prev, fx_prev = (torch.randn(3, 8, generator=gen, dtype=torch.float64) for _ in range(4))
    d_g, d_mix = (torch.randn(3, 4, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    gram = torch.bmm(d_g, d_g.transpose(1, 2))
    # the update writes its buffers in place: hand it copies so that the originals stay to compare against
    x_new, g, res, d_g2, d_mix2, gram2 = anderson_update(fx, x, g_prev, fx_prev, d_g.clone(), d_mix.clone(),
                                                          gram.clone(), 1, solvers.Anderson(ridge=0.0))
    assert torch.equal(d_g2[:, 1], (fx - x) - g_prev) and torch.equal(d_mix2[:, 1], fx - fx_prev)
    assert torch.equal(d_g2[:, 0], d_g[:, 0]) and torch.allclose(gram2, torch.bmm(d_g2, d_g2.transpose(1, 2)))
    gamma = torch.linalg.lstsq(d_g2.transpose(1, 2), g.unsqueeze(2)).solution  # [B, m, 1]
    expected = fx - torch.bmm(gamma.transpose(1, 2), d_mix2).squeeze(1)
    assert torch.allclose(x_new, expected, atol=1e-9) and torch.allclose(res, g.norm(dim=1))
