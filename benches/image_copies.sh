#!/usr/bin/env bash
# Benchmark (issue 24, copies): the fan-out of one image to 3 regions, `kiln apply` wall time ÷
# the critical path of a copy — export → copy → import, each awaiting its work request — and the
# API calls it took, against one `kiln emulator` serving four regions (lifecycles × TIME_SCALE).
# The image (captured from a builder) is made by a first apply, not timed; the timed apply adds
# `regions = [phx, fra, lhr]`: three copies, which share one export and run in parallel, so the
# critical path is one export (300 s), one copy (120 s) and one import (600 s) × the time scale
# (the emulator's durations, src/emulator/config.rs). After it, a second plan must be empty.
# Prints one markdown table row.
#   benches/image_copies.sh
#   env: KILN (binary; default: cargo build --release), TIME_SCALE (0.05), LATENCY_MS (50)
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${TIME_SCALE:-0.05}
latency=${LATENCY_MS:-50}
. benches/common.sh
start_emulator --time-scale "$scale" --latency-ms "$latency" \
  --region us-ashburn-1 --region us-phoenix-1 --region eu-frankfurt-1 --region uk-london-1
urls=($(grep '^listening on ' "$work/emu.out" | sed 's/listening on //'))
[ "${#urls[@]}" = 4 ] || { echo "expected four regions" >&2; cat "$work/emu.out" >&2; exit 1; }
dir="$work/copies"
mkdir -p "$dir"
manifest() {
  printf '[provider]\nendpoint = "%s"\nconfig_file = "%s"\nendpoints = { us-phoenix-1 = "%s", eu-frankfurt-1 = "%s", uk-london-1 = "%s" }\n\n' \
    "${urls[0]}" "$work/config" "${urls[1]}" "${urls[2]}" "${urls[3]}"
  printf '[defaults]\ncompartment = "ocid1.compartment.oc1..aaaaaaaabench"\navailability_domain = "kIdk:US-ASHBURN-AD-1"\nshape = "VM.Standard.E4.Flex"\nshape_config = { ocpus = 1, memory_in_gbs = 16 }\nsubnet = "%s"\n\n' "$subnet"
  printf '[instance.builder]\nsource = { image = "%s" }\n\n[image.golden]\nfrom_instance = "instance.builder"\n%s\n' "$image" "$1"
}
manifest "" > "$dir/kiln.toml"
"$kiln" apply --auto-approve "$dir" > "$work/first.out" 2>&1 || { cat "$work/first.out" >&2; exit 1; }
manifest 'regions = ["phx", "fra", "lhr"]
export = { namespace = "kilnemulator", bucket = "images" }' > "$dir/kiln.toml"
calls() {
  local total=0
  for u in "${urls[@]}"; do
    n=$(python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/stats")).get("total", 0))' "$u")
    total=$((total + n))
  done
  echo "$total"
}
before=$(calls)
start=$(date +%s.%N)
"$kiln" apply --auto-approve "$dir" > "$work/apply.out" 2>&1 || { cat "$work/apply.out" >&2; exit 1; }
end=$(date +%s.%N)
after=$(calls)
"$kiln" plan --detailed-exitcode "$dir" > "$work/plan.out" 2>&1 || { echo "a second plan is not empty" >&2; cat "$work/plan.out" >&2; exit 1; }
python3 - "$start" "$end" "$scale" "$before" "$after" <<'PY'
import sys
start, end, scale, before, after = map(float, sys.argv[1:6])
wall = end - start
path = (300 + 120 + 600) * scale
print("| DAG | time scale | kiln apply (s) | critical path (s) | ratio | API calls |")
print("|---|---|---|---|---|---|")
print(f"| one image → 3 regions (export → copy → import, ×3 in parallel) | {scale:g} | {wall:.2f} | {path:.2f} | {wall / path:.3f} | {int(after - before)} |")
PY
