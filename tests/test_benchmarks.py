"""The benchmark script (benchmarks/run.py) works and writes its page; its FLOP count is right.

Benchmarks are not tests: these only run the smallest budget (``--smoke``) of the sections that
need no training, and check the analytic FLOP count of a step against torch's FLOP counter.
"""

import sys
from pathlib import Path

import pyro
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
run = pytest.importorskip("run")


@pytest.mark.parametrize("batch,width", [(8, 16), (32, 24)])
def test_analytic_flops_match_the_flop_counter(batch, width):
    objective = run.build_svi(batch, width, [])
    counted = run.counted_flops(lambda: objective.step(0))
    layers = run.linear_shapes(objective.generator), run.linear_shapes(objective.guide)
    assert run.teacher_matmul_shape(objective.elbo.teacher) == (40, 2)  # MoG-40 in 2-D
    assert counted == run.analytic_step_flops(batch, *layers, teacher_matmul=(40, 2))


def test_matmul_rate_is_positive_and_reports_every_size():
    rate = run.matmul_rate(sizes=(32, 64), seconds=0.01)
    assert set(rate["by_size"]) == {"32", "64"}
    assert rate["peak"] == max(rate["by_size"].values()) > 0


def test_smoke_run_writes_the_page_and_plots(tmp_path):
    threads = torch.get_num_threads()
    try:
        results = run.main(["--smoke", "--threads", "1", "--docs", str(tmp_path), "--work", str(tmp_path / "work"),
                            "--sections", "overhead", "efficiency"])
    finally:
        torch.set_num_threads(threads)
        pyro.enable_validation(True)
    page = (tmp_path / "results.md").read_text()
    assert "SMOKE RUN (test budget) — NOT RESULTS" in page
    assert "GPU numbers are missing" in page
    assert results["commit"] in page and results["command"] in page
    for row in results["overhead"]["rows"]:
        assert row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
        assert f"**{row['ratio_median']:.3f}**" in page
    fractions = [r["fraction"] for r in results["efficiency"]["rows"]]
    assert fractions and all(f > 0 for f in fractions)
    for name in ("overhead", "efficiency"):
        assert (tmp_path / "results" / f"{name}.png").stat().st_size > 1000
    assert (tmp_path / "results.json").exists()
