#!/usr/bin/env bash
# Benchmark: `kiln apply` wall time ÷ the DAG's critical path, with the emulator's lifecycle
# durations scaled (`--time-scale`), for two DAGs:
#   - N independent instance launches (default 100);
#   - the golden-image DAG: a RUNNING builder (prepared by a first `kiln apply --target`) is
#     stopped, captured into an image, started again, and a fleet of F instances (default 20) is
#     launched from the image.
# The critical path is computed from the plan kiln itself prints (`kiln plan --json`: actions and
# `depends_on`), with each action's scaled emulator duration (launch 60 s, stop 30 s, start 30 s,
# capture 480 s, × the time scale), scheduled on P slots the way kiln's walker does (a node starts
# the moment its dependencies are done and a slot is free, ready nodes in plan order). For these
# DAGs that schedule is optimal, so it is the lower bound of any apply at parallelism P.
# API latency is not part of the critical path: it is overhead kiln has to beat.
# The N launches are applied twice, on fresh emulators: as kiln waits by default (the waits of a
# compartment share one listing per poll round) and with `--wait-reads get` (each wait polls its
# own resource with a Get, the per-resource way): API calls before and after list-based waiting.
# Prints one markdown table.
#   benches/apply.sh
#   env: KILN (binary; default: cargo build --release, target/release/kiln)
#        TIME_SCALE (0.05)  LATENCY_MS (50)  PARALLELISM (10)  N (100)  FLEET (20)
#        SMALL=1 (a smoke run: N=3, FLEET=2, TIME_SCALE=0.002)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SMALL:-0}" = 1 ]; then
  : "${N:=3}" "${FLEET:=2}" "${TIME_SCALE:=0.002}" "${LATENCY_MS:=5}"
fi
n=${N:-100}
fleet=${FLEET:-20}
scale=${TIME_SCALE:-0.05}
latency=${LATENCY_MS:-50}
par=${PARALLELISM:-10}
. benches/common.sh
emulator_flags=(--time-scale "$scale" --latency-ms "$latency")

header() {
  printf '[provider]\nendpoint = "%s"\nconfig_file = "%s"\n\n[defaults]\ncompartment = "ocid1.compartment.oc1..aaaaaaaabench"\navailability_domain = "kIdk:US-ASHBURN-AD-1"\nshape = "VM.Standard.E4.Flex"\nshape_config = { ocpus = 1, memory_in_gbs = 16 }\nsubnet = "%s"\n\n' "$url" "$work/config" "$subnet"
}

# Plan (for the DAG), apply (timed; extra apply flags after the folder), check the result plans
# nothing, print the row.
measure() {
  local label=$1 dir=$2
  shift 2
  "$kiln" plan --json "$dir" > "$work/plan.json"
  python3 - "$kiln" "$dir" "$url" "$scale" "$par" "$latency" "$label" "$work/plan.json" "$@" <<'PY'
import json, math, os, subprocess, sys, time, urllib.request
kiln, d, url, scale, par, latency, label, plan_file = sys.argv[1:9]
extra = sys.argv[9:]
scale, par = float(scale), int(par)
plan = json.load(open(plan_file))
changes = plan["changes"]
# The emulator's lifecycle durations at time-scale 1.0 (src/emulator/mod.rs), × the scale.
def duration(c):
    a, k = c["action"], c["kind"]
    if k == "instance" and a == "create":
        return 60.0 * scale
    if k == "image" and a == "create":
        return 480.0 * scale
    if a == "stop":
        return 30.0 * scale
    if a == "start":
        return 30.0 * scale
    raise SystemExit(f"no duration for {a} {k}")
dur = [duration(c) for c in changes]
deps = [c["depends_on"] for c in changes]
# List scheduling on `par` slots, ready nodes in plan order (kiln's walker).
finish = [None] * len(changes)
running = []  # (end, index)
now, done = 0.0, 0
started = [False] * len(changes)
while done < len(changes):
    for i in range(len(changes)):
        if len(running) >= par:
            break
        if not started[i] and all(finish[j] is not None and finish[j] <= now for j in deps[i]):
            started[i] = True
            running.append((now + dur[i], i))
    running.sort()
    end, i = running.pop(0)
    now = end
    finish[i] = end
    done += 1
critical = max(finish)
def stats():
    return json.load(urllib.request.urlopen(url + "/_emulator/stats")).get("total", 0)
before = stats()
t = time.monotonic()
p = subprocess.Popen([kiln, "apply", "--auto-approve", "--parallelism", str(par), d] + extra,
                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(os.path.dirname(plan_file), "apply.err"), "w"))
_, status, ru = os.wait4(p.pid, 0)
wall = time.monotonic() - t
calls = stats() - before
assert os.waitstatus_to_exitcode(status) == 0, open(os.path.join(os.path.dirname(plan_file), "apply.err")).read()[-3000:]
rss = ru.ru_maxrss / 1024
q = subprocess.run([kiln, "plan", "--detailed-exitcode", d], capture_output=True)
assert q.returncode == 0, "the apply left changes: " + q.stdout.decode()[-3000:]
actions = ", ".join(f"{n} {a}" for a, n in sorted(
    {a: sum(1 for c in changes if f'{c["action"]} {c["kind"]}' == a) for a in {f'{c["action"]} {c["kind"]}' for c in changes}}.items()))
print(f"| {label} | {actions} | {par} | {wall:.2f} | {critical:.2f} | {wall / critical:.3f} | {calls} | {rss:.0f} |")
PY
}

echo "time scale ×$scale (launch $(python3 -c "print(60*$scale)") s, stop/start $(python3 -c "print(30*$scale)") s, capture $(python3 -c "print(480*$scale)") s), latency ${latency} ms"
echo
echo "| DAG | actions | parallelism | kiln apply (s) | critical path (s) | ratio | API calls | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|"

# 1. N independent instances.
start_emulator "${emulator_flags[@]}"
dir="$work/independent"; mkdir -p "$dir"
{
  header
  for i in $(seq 1 "$n"); do printf '[instance.i%04d]\nsource = { image = "%s" }\n\n' "$i" "$image"; done
} > "$dir/kiln.toml"
measure "$n independent instances" "$dir"
stop_emulator
start_emulator "${emulator_flags[@]}"
rm -rf "$dir/state"
sed -i "s|^endpoint = .*|endpoint = \"$url\"|" "$dir/kiln.toml"
measure "$n independent instances, --wait-reads get" "$dir" --wait-reads get
stop_emulator

# 2. The golden-image DAG: the builder exists and runs; stop → capture → start ‖ fleet launches.
start_emulator "${emulator_flags[@]}"
dir="$work/golden"; mkdir -p "$dir"
{
  header
  printf '[instance.builder]\nsource = { image = "%s" }\n\n' "$image"
  printf '[image.golden]\nfrom_instance = "instance.builder"\ndisplay_name = "golden"\n\n'
  for i in $(seq 1 "$fleet"); do printf '[instance.web%02d]\nsource = { image = "image.golden" }\n\n' "$i"; done
} > "$dir/kiln.toml"
"$kiln" apply --auto-approve --target instance.builder "$dir" > "$work/prepare.out" 2>&1 || { cat "$work/prepare.out" >&2; exit 1; }
measure "golden image: stop → capture → start ‖ $fleet launches" "$dir"
stop_emulator
