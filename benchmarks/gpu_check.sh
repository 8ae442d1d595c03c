#!/usr/bin/env bash
# GPU check, for a CUDA machine (CI has none): within about 5 minutes it runs
#   1. the tests that need a GPU (pytest -k cuda),
#   2. a shortened default fit with device=cuda,
#   3. benchmark 1 (SVI step vs plain-torch twin, batch 256 and 1024; eager, and both compiled with
#      objective.compile=true where inductor can build them, else the failure is in the table) and 4 (sampling)
#      on the GPU,
# and prints a short table with the card's name; the same table goes to docs/gpu_check.md, which
# benchmarks/run.py includes in docs/results.md.
#
#   bash benchmarks/gpu_check.sh [PYTHON]        # PYTHON defaults to `python`
#
# On a copy of the tree without .git, set VARDIU_COMMIT to the commit it was copied from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python}
OUT=${GPU_CHECK_OUT:-outputs/benchmarks/gpu_check}
mkdir -p "$OUT" docs
export HF_HUB_OFFLINE=1

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check.sh: CUDA is not available on this machine")'
START=$(date +%s)

echo "== 1. tests that need a GPU"
set +e
"$PY" -m pytest -q -k cuda tests/ 2>&1 | tee "$OUT/tests.log"
TESTS_RC=${PIPESTATUS[0]}
set -e

echo "== 2. default fit, device=cuda (shortened)"
"$PY" -m vardiu_pyro.fit device=cuda trainer.iterations=3000 trainer.eval_every=1000 trainer.progress=false \
    "hydra.run.dir=$OUT/fit" | tee "$OUT/fit.log"

echo "== 3. benchmarks 1 and 4 on the GPU"
"$PY" - "$OUT" "$TESTS_RC" "$START" <<'PYEOF'
import json, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
out, tests_rc, start = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
import run  # benchmarks/run.py
import step_overhead

# benchmark 1 on CUDA: the same measurement as step_overhead.py, networks and draws on the GPU, the compiled steps
# beside the eager ones where inductor can build them (a failure is reported, and the eager steps are timed alone)
overhead, compiled_error = [], None
for b in (256, 1024):  # the default networks
    try:
        overhead.append(step_overhead.measure(b, None, 10, 20, 10, [], device="cuda", compiled=compiled_error is None))
    except Exception as e:
        compiled_error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
        overhead.append(step_overhead.measure(b, None, 10, 20, 10, [], device="cuda"))
sampling = run.bench_sampling({"num_samples": 10_000, "rounds": 3, "steps": [10, 35, 100], "eval_samples": 10_000},
                              out / "fit", run.train_teacher(out, ["device=cuda", "trainer.iterations=1500",
                                                                   "trainer.eval_every=1500"]), device="cuda")
fit = json.loads((out / "fit" / "summary.json").read_text())
card = torch.cuda.get_device_name(0)
lines = [f"Card: **{card}**; {time.strftime('%Y-%m-%d')}, commit {run.git_commit()}, command "
         "`bash benchmarks/gpu_check.sh`; torch " + torch.__version__, "",
         "| check | result |", "|---|---|",
         f"| GPU tests (`pytest -k cuda`) | {'passed' if tests_rc == 0 else 'FAILED (exit ' + str(tests_rc) + ')'} |",
         f"| default fit, device=cuda, {fit['iteration']} iterations | log-MMD {fit['log_mmd']:.2f}, "
         f"log-density {fit.get('log_density', float('nan')):.2f}, modes {fit.get('modes_covered')}, "
         f"{fit['train_seconds']:.0f} s training |"]
for r in overhead:
    lines.append(f"| SVI / twin step, batch {r['batch_size']} | ratio {r['ratio_median']:.3f} "
                 f"(IQR {r['ratio_q1']:.3f}–{r['ratio_q3']:.3f}); {r['svi_ms']:.2f} vs {r['twin_ms']:.2f} ms |")
    if "compiled_ratio_median" in r:
        lines.append(f"| both compiled (objective.compile=true / twin), batch {r['batch_size']} | ratio "
                     f"{r['compiled_ratio_median']:.3f} (IQR {r['compiled_ratio_q1']:.3f}–{r['compiled_ratio_q3']:.3f}); "
                     f"{r['svi_compiled_ms']:.2f} vs {r['twin_compiled_ms']:.2f} ms; compiled SVI / eager SVI "
                     f"{r['compiled_to_eager_ratio_median']:.3f}; first step {r['svi_compiled_first_s']:.1f} s |")
if compiled_error:
    lines.append(f"| both compiled (objective.compile=true) | FAILED: {compiled_error} |")
for r in sampling["rows"]:
    if "exact" in r["sampler"]:
        continue
    lines.append(f"| sampling: {r['sampler']} | {r['samples_per_s']:.0f} samples/s, log-MMD {r['log_mmd']:.2f} |")
lines.append(f"| total wall-clock | {time.time() - start:.0f} s |")
text = "\n".join(lines) + "\n"
Path("docs/gpu_check.md").write_text(text)
(out / "gpu_check.json").write_text(json.dumps({"card": card, "overhead": overhead, "sampling": sampling,
                                                "fit": {k: fit[k] for k in ("log_mmd", "train_seconds")}}, indent=2))
print(text)
PYEOF
