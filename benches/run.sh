#!/usr/bin/env bash
# Benchmark: a no-change `kiln plan` of N managed instances vs the per-resource refresh peer
# (GetInstance per instance, 10 in parallel, Oracle's Python SDK), side by side on one emulator
# with injected latency. Prints one markdown table row per N.
#   benches/run.sh [N...]          (default: 100 1000)   kiln plan: median of 3 runs
#   env: LATENCY_MS (default 50), KILN (binary; default: cargo build --release, target/release/kiln)
# The time `kiln apply` took to build each estate (no latency, instant lifecycles) goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ $# -eq 0 ] && sizes=(100 1000)
latency=${LATENCY_MS:-50}
. benches/common.sh

echo "| N | kiln plan (s) | of which emulator CPU (s) | kiln API calls | kiln peak RSS (MiB) | peer refresh (s) | peer API calls | peer peak RSS (MiB) | speed-up |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
  # Build the estate with kiln itself on the same emulator (in memory: with `--data` the emulator
  # rewrites its whole data file on every change: quadratic in N, most of the build time at N = 1,000).
  start_emulator --time-scale 0 --latency-ms "$latency"
  dir="$work/m-$n"; mkdir -p "$dir"
  {
    printf '[provider]\nendpoint = "%s"\nconfig_file = "%s"\n\n[defaults]\ncompartment = "ocid1.compartment.oc1..aaaaaaaabench"\navailability_domain = "kIdk:US-ASHBURN-AD-1"\nshape = "VM.Standard.E4.Flex"\nshape_config = { ocpus = 1, memory_in_gbs = 16 }\nsubnet = "%s"\nsource = { image = "%s" }\n\n' "$url" "$work/config" "$subnet" "$image"
    for i in $(seq 1 "$n"); do printf '[instance.i%05d]\n' "$i"; done
  } > "$dir/kiln.toml"
  t0=$(date +%s.%N)
  "$kiln" apply --auto-approve --parallelism 50 "$dir" > "$work/build.out" 2>&1 || { tail -20 "$work/build.out" >&2; exit 1; }
  echo "N=$n: the estate was built by kiln apply in $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s" >&2

  # Median of 3 plans; API calls per plan (from the emulator's stats, the most of the 3); the
  # emulator's CPU time while serving the plan (user + system, from /proc), part of kiln's time.
  kiln_json=$(python3 - "$kiln" "$dir" "$url" "$emu_pid" <<'PY'
import json, os, resource, subprocess, sys, time, urllib.request
kiln, d, url, emu = sys.argv[1:5]
def total():
    return json.load(urllib.request.urlopen(url + "/_emulator/stats")).get("total", 0)
def emu_cpu():
    f = open(f"/proc/{emu}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
runs = []
for _ in range(3):
    before, cpu = total(), emu_cpu()
    t = time.monotonic()
    p = subprocess.run([kiln, "plan", "--detailed-exitcode", d], capture_output=True)
    runs.append((time.monotonic() - t, total() - before, emu_cpu() - cpu))
    assert p.returncode == 0, p.stdout.decode()[-2000:] + p.stderr.decode()[-2000:]
seconds, _, emu_seconds = sorted(runs)[1]
print(json.dumps({"seconds": seconds, "emulator_cpu": emu_seconds, "calls": max(r[1] for r in runs), "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
PY
)
  python3 -c 'import json,sys; [print(r["id"]) for r in json.load(open(sys.argv[1]))["resources"].values()]' "$dir/state/default.json" > "$work/ids"
  peer_json=$(python3 benches/peer_refresh.py "$work/config" "$url" "$work/ids")
  python3 - "$n" "$kiln_json" "$peer_json" <<'PY'
import json, sys
n, k, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {n} | {k['seconds']:.2f} | {k['emulator_cpu']:.2f} | {k['calls']} | {k['peak_rss_mib']:.0f} | {p['seconds']:.2f} | {p['calls']} | {p['peak_rss_mib']:.0f} | {p['seconds']/k['seconds']:.1f}× |")
PY
  stop_emulator
done
