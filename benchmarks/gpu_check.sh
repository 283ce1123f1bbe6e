#!/usr/bin/env bash
# The benchmark path on a machine with NVIDIA GPUs, in one command (a few minutes at most):
#
#   benchmarks/gpu_check.sh [OUTDIR]          # default ./gpu_check_out
#   PYTHON=/opt/venv/bin/python benchmarks/gpu_check.sh /tmp/gpu
#
# Needs torch (with CUDA) in that Python and preflight installed there (`pip install --no-deps .`
# leaves torch alone). It runs:
#  1. `preflight node --save-facts`: the node's facts (GPU model, PCIe link, NVLink);
#  2. `preflight bench`: NCCL all-reduce over every local GPU (1 MiB .. 1 GiB, CUDA-event timing,
#     correctness), and the memory benchmark per GPU (usable memory, D2D, pinned H2D/D2H);
#  3. a summary: the numbers next to the expectations in compat_matrix/bench.toml, and each
#     bench.* finding. OUTDIR keeps the facts, bench.json and both JSON reports: `preflight replay
#     OUTDIR/bench` judges them again anywhere, and they are the figures the matrix is checked with.
# Exit status: preflight bench's (0 pass, 1 a check failed, 2 usage, 3 internal error).
set -u -o pipefail
OUT=${1:-gpu_check_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
start=$(date +%s)

echo "== machine"
nvidia-smi -L 2>&1 | head -16
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'

echo "== preflight node"
"$PY" -m preflight node --json --save-facts "$OUT/node.json" > "$OUT/node_report.json"
echo "exit $?"

echo "== preflight bench"
"$PY" -m preflight bench --json --save-facts "$OUT/bench" ${BENCH_ARGS:-} > "$OUT/bench_report.json"
rc=$?
echo "exit $rc"

"$PY" - "$OUT/bench_report.json" <<'EOF'
import json
import sys

doc = json.load(open(sys.argv[1]))
bench = doc.get("benchmark") or {}
print(f"\n== all-reduce: {bench.get('backend')}, {bench.get('world_size')} rank(s)   (GB/s = 1e9 B/s)")
print(f"{'bytes':>12} {'iters':>6} {'time us':>10} {'algbw':>8} {'busbw':>8} {'wrong':>6}")
for s in bench.get("sizes", []):
    print(f"{s['bytes']:>12} {s['iters']:>6} {s['seconds_avg'] * 1e6:>10.1f} {s['algbw'] / 1e9:>8.2f} "
          f"{s['busbw'] / 1e9:>8.2f} {s['wrong']:>6}")
exp = bench.get("expected_busbw")
print("expected busbw:", f"{exp['value'] / 1e9:.1f} GB/s ({exp['source']})" if exp else bench.get("expected_missing"))
print("\n== memory   (GB/s; a copy counts bytes read + written)")
for m in bench.get("memory", []):
    usable = (m.get("usable_bytes") or 0) / 2**30
    target = (m.get("target_bytes") or 0) / 2**30
    fmt = lambda v: "-" if v is None else f"{v / 1e9:.1f}"
    print(f"{m['node']}/{m['device']} {m.get('name')}: usable {usable:.1f}/{target:.1f} GiB, "
          f"D2D {fmt(m.get('d2d_bps'))}, H2D {fmt(m.get('h2d_bps'))}, D2H {fmt(m.get('d2h_bps'))}, "
          f"host {fmt(m.get('host_bps'))}")
print("\n== findings")
for f in doc.get("cluster_findings", []):
    print(f"{f['status']:>5}  {f['id']}: {f['observed']}")
print("\nstages:", bench.get("stage_seconds"), "total", bench.get("seconds"), "s")
EOF
echo "gpu_check: $(( $(date +%s) - start )) s, results in $OUT"
exit $rc
