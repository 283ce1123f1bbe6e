#!/usr/bin/env bash
# Verify preflight's real GPU paths on a machine with an NVIDIA GPU, and record fixtures.
#
#   scripts/verify_gpu_node.sh OUTDIR
#
# Installs preflight from this checkout without touching other packages (--no-deps), then:
#  1. `preflight node --save-facts` through each GPU source (pynvml, nvml-ctypes, nvidia-smi)
#     and a field-by-field comparison of what they read;
#  2. `preflight replay` of the saved facts (must give the same findings);
#  3. a real stray process: torch holds GPU memory while preflight runs, and
#     gpu.memory_in_use must fail naming its pid;
#  4. raw nvidia-smi captures (CSV, -q, header) for the parser tests;
#  5. benchmarks/node_latency.py against torch's collect_env on this GPU machine.
# Everything lands in OUTDIR; the exit status is non-zero if any step's expectation fails.
set -u -o pipefail
OUT=${1:?usage: verify_gpu_node.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
status=0
note() { printf '\n=== %s\n' "$*"; }
bad() { echo "FAILED: $*"; status=1; }

note "machine"
nvidia-smi -L; $PY --version; uname -r
$PY -m pip install -q --no-deps --no-build-isolation --no-index . 2>&1 | tail -2 || bad "pip install"
REPO=$PWD
cd /tmp || exit 1

note "preflight node through each GPU source"
for src in pynvml nvml-ctypes nvidia-smi; do
  PREFLIGHT_GPU_SOURCE=$src $PY -m preflight node --save-facts "$OUT/facts_$src.json" --json > "$OUT/report_$src.json"
  rc=$?
  echo "$src: exit $rc"
  [ "$rc" -le 1 ] || bad "preflight node via $src exited $rc"
done
$PY -m preflight node --save-facts "$OUT/facts_default.json"; echo "default: exit $?"

note "sources agree"
$PY - "$OUT" <<'PY' || status=1
import json, sys
out = sys.argv[1]
facts = {s: json.load(open(f"{out}/facts_{s}.json")) for s in ("pynvml", "nvml-ctypes", "nvidia-smi")}
ok = True
for s, f in facts.items():
    print(s, "source:", f["gpu"]["source"], "devices:", len(f["gpu"]["devices"]), "unavailable:", f["gpu"]["unavailable"])
    if f["gpu"]["source"] != s or not f["gpu"]["devices"]:
        print("  FAILED: this source did not answer"); ok = False
ref = facts["pynvml"]["gpu"]
volatile = {"temperature_c", "memory_used_bytes", "memory_free_bytes", "utilization_percent",
            "throttle_reasons", "pcie_gen_current", "unavailable", "processes"}
for s in ("nvml-ctypes", "nvidia-smi"):
    for a, b in zip(ref["devices"], facts[s]["gpu"]["devices"]):
        for key in a:
            if key in volatile or a[key] == b[key]:
                continue
            if s == "nvidia-smi" and b[key] is None:
                print(f"  {s}: {key} not available ({b['unavailable'].get(key)})"); continue
            print(f"  MISMATCH {s}.{key}: pynvml={a[key]!r} {s}={b[key]!r}"); ok = ok and s != "nvml-ctypes"
    for key in ("driver_version", "cuda_driver_version"):
        if ref[key] != facts[s]["gpu"][key]:
            print(f"  MISMATCH {s}.{key}: {ref[key]!r} vs {facts[s]['gpu'][key]!r}")
            ok = False
print("sources agree" if ok else "FAILED: sources disagree")
sys.exit(0 if ok else 1)
PY

note "replay gives the same findings"
$PY -m preflight replay "$OUT/facts_pynvml.json" --json > "$OUT/replay_pynvml.json"
$PY - "$OUT" <<'PY' || status=1
import json, sys
out = sys.argv[1]
a = json.load(open(f"{out}/report_pynvml.json"))["findings"]
b = json.load(open(f"{out}/replay_pynvml.json"))["findings"]
print("same" if a == b else "FAILED: replay differs"); sys.exit(0 if a == b else 1)
PY

note "a real stray process holding GPU memory"
$PY -c "import torch, time; x = torch.empty(8 << 30, dtype=torch.uint8, device='cuda'); x.fill_(1); torch.cuda.synchronize(); open('/tmp/holder.ready','w').close(); time.sleep(120)" &
holder=$!
for _ in $(seq 120); do [ -e /tmp/holder.ready ] && break; sleep 0.5; done
$PY -m preflight node --only gpu.memory_in_use --json --save-facts "$OUT/facts_stray_process.json" > "$OUT/report_stray.json"
echo "exit $?"
$PY - "$OUT" "$holder" <<'PY' || status=1
import json, sys
doc = json.load(open(f"{sys.argv[1]}/report_stray.json"))
(f,) = doc["findings"]
print(f["status"], f["observed"])
ok = f["status"] == "fail" and sys.argv[2] in json.dumps(f)
print("stray process caught with its pid" if ok else "FAILED: stray process not reported")
sys.exit(0 if ok else 1)
PY
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

note "raw nvidia-smi captures"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1
nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,memory.total,memory.used,memory.free,compute_cap,driver_version,ecc.mode.current,ecc.errors.uncorrected.volatile.total,retired_pages.pending,remapped_rows.pending,remapped_rows.failure,temperature.gpu,power.limit,utilization.gpu,clocks_event_reasons.active,persistence_mode,mig.mode.current,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv,noheader,nounits > "$OUT/nvidia-smi-query-gpu.csv" 2>&1
head -c 600 "$OUT/nvidia-smi-query-gpu.csv"; echo

note "node latency against collect_env"
$PY "$REPO/benchmarks/node_latency.py" --runs 5 | tee "$OUT/node_latency.txt" || bad "latency benchmark"
exit $status
