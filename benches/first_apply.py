"""Benchmark: the first `kiln apply` of N instance launches (one fleet, one compartment) against a
fresh `kiln emulator` with scaled lifecycles and injected latency: wall time ÷ the critical path,
API calls per launch (by operation), kiln's CPU time and peak RSS, the emulator's CPU time. After
each apply a second plan must be empty.

The critical path: N independent launches on P slots take ceil(N / P) launch durations (60 s ×
the time scale); no apply at parallelism P can be faster. API round trips are not part of it.

usage: python3 benches/first_apply.py [N...]      (default: 1000 5000)
env:   TIME_SCALE (0.05)  LATENCY_MS (50)  PARALLELISM (50)  KILN (binary)
       SMALL=1 (a smoke run: N=6, PARALLELISM=3, TIME_SCALE=0.002, LATENCY_MS=5)
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulators as E  # noqa: E402

SMALL = os.environ.get("SMALL") == "1"
SCALE = float(os.environ.get("TIME_SCALE", "0.002" if SMALL else "0.05"))
LATENCY = int(os.environ.get("LATENCY_MS", "5" if SMALL else "50"))
PAR = int(os.environ.get("PARALLELISM", "3" if SMALL else "50"))
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaabench"
LAUNCH = 60.0
# The reads of the waits (the rest are the launches, the plan's and the network facts' reads).
WAIT_READS = ("GetInstance", "ListInstances")


def main():
    sizes = [int(a) for a in sys.argv[1:]] or ([6] if SMALL else [1000, 5000])
    kiln = E.kiln_binary()
    work = E.Work()
    print(f"time scale ×{SCALE} (launch {LAUNCH * SCALE:g} s), latency {LATENCY} ms, parallelism {PAR}")
    print()
    print("| N | kiln apply (s) | critical path (s) | ratio | API calls | calls per launch | wait reads per launch | kiln CPU (s) | emulator CPU (s) | kiln peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    breakdowns = []
    try:
        for n in sizes:
            emu = E.Emulators(kiln, work, ["us-ashburn-1"], [COMPARTMENT], SCALE, LATENCY)
            try:
                f = emu.fixtures[0]
                d = os.path.join(work.dir, f"launch-{n}")
                os.makedirs(d)
                with open(os.path.join(d, "kiln.toml"), "w") as m:
                    m.write(
                        E.header(emu) + f'config_file = "{work.config}"\n\n[defaults]\n'
                        f'compartment = "{COMPARTMENT}"\navailability_domain = "{f["availability_domains"][0]}"\n'
                        f'shape = "VM.Standard.E4.Flex"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\n'
                        f'subnet = "{f["public_subnet_id"]}"\nsource = {{ image = "{f["platform_images"][0]["id"]}" }}\n\n'
                        f"[instance.web]\ncount = {n}\n"
                    )
                before, cpu = emu.stats(), emu.cpu()
                r = E.check(E.run([kiln, "apply", "--auto-approve", "--parallelism", str(PAR), d]), "the apply")
                calls = E.delta(before, emu.stats())
                emu_cpu = emu.cpu() - cpu
                E.check(E.run([kiln, "plan", "--detailed-exitcode", d]), "the plan after the apply")
                critical = math.ceil(n / PAR) * LAUNCH * SCALE
                total = calls.get("total", 0)
                waits = sum(calls.get(k, 0) for k in WAIT_READS)
                print(f"| {n} | {r['seconds']:.2f} | {critical:.2f} | {(r['seconds'] / critical) if critical else float('nan'):.3f} | {total} | {total / n:.2f} | "
                      f"{waits / n:.2f} | {r['cpu']:.2f} | {emu_cpu:.2f} | {r['rss_mib']:.0f} |")
                ops = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if k != "total")
                breakdowns.append(f"- N={n} API calls by operation: {ops}")
            finally:
                emu.stop()
    finally:
        work.close()
    print()
    for b in breakdowns:
        print(b)


if __name__ == "__main__":
    main()
