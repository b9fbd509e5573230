"""Benchmark: a no-change `kiln plan` of an estate of N instances spread over R regions × C
compartments (one fleet per pair, N / (R·C) members each), against `kiln emulator` serving the
regions with injected latency, beside the per-resource refresh peer — one GetInstance per
instance, 10 in parallel, with Oracle's Python SDK (`peer_refresh.py`) — on the same emulator.
Also the plan's CPU end to end (process start, state load, manifest, plan): with the refresh, and
without it (`--refresh=false`, no network). Prints one markdown table row; the build of the estate
(by `kiln apply` itself, instant lifecycles) goes to stderr.

usage: python3 benches/estate.py
env:   N (10000)  REGIONS (2)  COMPARTMENTS (5)  LATENCY_MS (50)  KILN (binary)
       SMALL=1 (a smoke run: N=12, COMPARTMENTS=2, LATENCY_MS=5)
"""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulators as E  # noqa: E402

SMALL = os.environ.get("SMALL") == "1"
N = int(os.environ.get("N", "12" if SMALL else "10000"))
REGIONS = ["us-ashburn-1", "us-phoenix-1", "eu-frankfurt-1", "uk-london-1", "ap-tokyo-1"][
    : int(os.environ.get("REGIONS", "2"))
]
COMPARTMENTS = [f"ocid1.compartment.oc1..aaaaaaaabench{i}" for i in range(int(os.environ.get("COMPARTMENTS", "2" if SMALL else "5")))]
LATENCY = int(os.environ.get("LATENCY_MS", "5" if SMALL else "50"))


def manifest(emu, config):
    pairs = [(r, c) for r in range(len(REGIONS)) for c in range(len(COMPARTMENTS))]
    each, extra = divmod(N, len(pairs))
    text = E.header(emu) + f'config_file = "{config}"\n\n[defaults]\nshape = "VM.Standard.E4.Flex"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\n\n'
    for k, (r, c) in enumerate(pairs):
        f = emu.fixtures[r]
        text += (
            f"[instance.r{r}c{c}]\ncount = {each + (1 if k < extra else 0)}\n"
            f'region = "{f["region"]}"\ncompartment = "{COMPARTMENTS[c]}"\n'
            f'availability_domain = "{f["availability_domains"][0]}"\n'
            f'subnet = "{f["public_subnet_id"]}"\nsource = {{ image = "{f["platform_images"][0]["id"]}" }}\n\n'
        )
    return text


def main():
    kiln = E.kiln_binary()
    work = E.Work()
    emu = E.Emulators(kiln, work, REGIONS, COMPARTMENTS, 0, LATENCY)
    try:
        d = os.path.join(work.dir, "estate")
        os.makedirs(d)
        with open(os.path.join(d, "kiln.toml"), "w") as f:
            f.write(manifest(emu, work.config))
        build = E.check(E.run([kiln, "apply", "--auto-approve", "--parallelism", "50", d]), "the build")
        print(f"N={N}: the estate was built by kiln apply in {build['seconds']:.1f} s "
              f"(kiln CPU {build['cpu']:.1f} s, peak RSS {build['rss_mib']:.0f} MiB)", file=sys.stderr)
        plans = []
        for _ in range(3):
            before, cpu = emu.stats(), emu.cpu()
            r = E.check(E.run([kiln, "plan", "--detailed-exitcode", d]), "the plan")
            calls = E.delta(before, emu.stats())
            plans.append((r["seconds"], r, calls.get("total", 0), emu.cpu() - cpu, calls))
        plans.sort(key=lambda p: p[0])
        seconds, plan, _, emu_cpu, calls = plans[1]
        offline = sorted(
            (E.check(E.run([kiln, "plan", "--refresh=false", "--detailed-exitcode", d]), "the offline plan") for _ in range(3)),
            key=lambda r: r["seconds"],
        )[1]
        state = json.load(open(os.path.join(d, "state", "default.json")))
        ids = os.path.join(work.dir, "ids")
        with open(ids, "w") as f:
            for r in state["resources"].values():
                f.write(r["id"] + "\n")
        endpoints = ",".join(f'{fx["region_code"]}={u}' for fx, u in zip(emu.fixtures, emu.urls))
        peer = json.loads(subprocess.run(
            [sys.executable, os.path.join(E.ROOT, "benches", "peer_refresh.py"), work.config, endpoints, ids],
            check=True, capture_output=True, text=True).stdout)
        where = f"{len(REGIONS)} × {len(COMPARTMENTS)}"
        print(f"| N | regions × compartments | kiln plan (s) | kiln CPU (s) | of which emulator CPU (s) | kiln API calls | kiln peak RSS (MiB) | plan --refresh=false: wall / CPU (s), RSS (MiB) | peer refresh (s) | peer API calls | peer peak RSS (MiB) | speed-up |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {N} | {where} | {seconds:.2f} | {plan['cpu']:.2f} | {emu_cpu:.2f} | {calls.get('total', 0)} | {plan['rss_mib']:.0f} | "
              f"{offline['seconds']:.2f} / {offline['cpu']:.2f}, {offline['rss_mib']:.0f} | {peer['seconds']:.2f} | {peer['calls']} | {peer['peak_rss_mib']:.0f} | {peer['seconds'] / seconds:.1f}× |")
        ops = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if k != "total")
        print(f"\n- kiln plan API calls by operation: {ops}")
    finally:
        emu.stop()
        work.close()


if __name__ == "__main__":
    main()
