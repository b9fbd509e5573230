#!/usr/bin/env bash
# Benchmark: a no-change `kiln plan` of N managed instances vs the per-resource refresh peer
# (GetInstance per instance, 10 in parallel, Oracle's Python SDK), side by side on one emulator
# with injected latency. Prints one markdown table row per N.
#   benches/run.sh [N...]          (default: 100 1000)   env: LATENCY_MS (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100 1000}")
[ $# -eq 0 ] && sizes=(100 1000)
latency=${LATENCY_MS:-50}
cargo build --release --quiet
kiln=target/release/kiln
work=$(mktemp -d)
trap 'kill $emu_pid 2>/dev/null || true; rm -rf "$work"' EXIT

key=tests/fixtures/signing/keys/pkcs1.pem
cat > "$work/config" <<CFG
[DEFAULT]
user=ocid1.user.oc1..aaaatest
tenancy=ocid1.tenancy.oc1..aaaatest
fingerprint=f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed
key_file=$PWD/$key
region=us-ashburn-1
CFG

echo "| N | kiln plan (s) | kiln API calls | kiln peak RSS (MiB) | peer refresh (s) | peer API calls | peer peak RSS (MiB) | speed-up |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
  # Build the estate with kiln itself, without latency, then restart the emulator with latency.
  data="$work/data-$n.json"
  "$kiln" emulator --listen 127.0.0.1:0 --oci-config "$work/config" --time-scale 0 --data "$data" > "$work/emu.out" &
  emu_pid=$!
  until head -1 "$work/emu.out" 2>/dev/null | grep -q listening; do sleep 0.05; done
  url=$(head -1 "$work/emu.out" | sed 's/listening on //')
  dir="$work/m-$n"; mkdir -p "$dir"
  fx=$(curl -s "$url/_emulator/fixtures")
  subnet=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["public_subnet_id"])' <<<"$fx")
  image=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["platform_images"][0]["id"])' <<<"$fx")
  {
    printf '[provider]\nendpoint = "%s"\nconfig_file = "%s"\n\n[defaults]\ncompartment = "ocid1.compartment.oc1..aaaaaaaabench"\navailability_domain = "kIdk:US-ASHBURN-AD-1"\nshape = "VM.Standard.E4.Flex"\nshape_config = { ocpus = 1, memory_in_gbs = 16 }\nsubnet = "%s"\nsource = { image = "%s" }\n\n' "$url" "$work/config" "$subnet" "$image"
    for i in $(seq 1 "$n"); do printf '[instance.i%05d]\n' "$i"; done
  } > "$dir/kiln.toml"
  "$kiln" apply --auto-approve --parallelism 50 "$dir" > /dev/null 2>&1
  kill $emu_pid; wait $emu_pid 2>/dev/null || true

  "$kiln" emulator --listen 127.0.0.1:0 --oci-config "$work/config" --time-scale 0 --data "$data" --latency-ms "$latency" > "$work/emu.out" &
  emu_pid=$!
  until head -1 "$work/emu.out" 2>/dev/null | grep -q listening; do sleep 0.05; done
  url=$(head -1 "$work/emu.out" | sed 's/listening on //')
  sed -i "s#^endpoint = .*#endpoint = \"$url\"#" "$dir/kiln.toml"

  before=$(curl -s "$url/_emulator/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total",0))')
  kiln_json=$(python3 - "$kiln" "$dir" <<'PY'
import json, resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run([sys.argv[1], "plan", "--detailed-exitcode", sys.argv[2]], capture_output=True)
s = time.monotonic() - t
assert p.returncode == 0, p.stdout.decode()[-2000:] + p.stderr.decode()[-2000:]
print(json.dumps({"seconds": s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
PY
)
  after=$(curl -s "$url/_emulator/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total",0))')
  python3 -c 'import json,sys; [print(r["id"]) for r in json.load(open(sys.argv[1]))["resources"].values()]' "$dir/state/default.json" > "$work/ids"
  peer_json=$(python3 benches/peer_refresh.py "$work/config" "$url" "$work/ids")
  python3 - "$n" "$kiln_json" "$((after - before))" "$peer_json" <<'PY'
import json, sys
n, k, calls, p = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
print(f"| {n} | {k['seconds']:.2f} | {calls} | {k['peak_rss_mib']:.0f} | {p['seconds']:.2f} | {p['calls']} | {p['peak_rss_mib']:.0f} | {p['seconds']/k['seconds']:.1f}× |")
PY
  kill $emu_pid; wait $emu_pid 2>/dev/null || true
done
