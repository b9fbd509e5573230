"""Benchmark: applies at the pace OCI allows, and where a fleet lands when domains are full.

A. 400 launches against `kiln emulator --rate-limit LaunchInstance=20:20` (time scale 0): kiln
   with its adaptive budget (`oci::budget`), the same apply with adaptation off
   (`KILN_RATE_ADAPT=off`: fixed concurrency, 429s retried with backoff), and Oracle's Python SDK
   launching the same 400 at 10 threads with its default retry strategy. The floor is 400 / 20 =
   20 s less the burst (one second's worth); reported: wall ÷ 20 s, 429s ÷ all requests, failed.
B. A fleet of 30 over 3 ADs (`placement`, fault domains "any") with room for 12, 12 and 6: every
   member placed, where the assignment and the fallback (next AD, wrapping) say; calls counted.

usage: python3 benches/rate_limits.py
env:   N (400)  RATE (20)  BURST (20)  PARALLELISM (10)  KILN (binary)
       SMALL=1 (a smoke run: N=20, RATE=50, fleet of 6 with room 2/2/2)
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulators as E  # noqa: E402

SMALL = os.environ.get("SMALL") == "1"
N = int(os.environ.get("N", "20" if SMALL else "400"))
RATE = float(os.environ.get("RATE", "50" if SMALL else "20"))
BURST = int(os.environ.get("BURST", "20"))
PAR = int(os.environ.get("PARALLELISM", "10"))
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaabench"


def manifest(emu, work, body):
    f = emu.fixtures[0]
    return (
        E.header(emu) + f'config_file = "{work.config}"\n\n[defaults]\n'
        f'compartment = "{COMPARTMENT}"\navailability_domain = "{f["availability_domains"][0]}"\n'
        f'shape = "VM.Standard.E4.Flex"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\n'
        f'subnet = "{f["public_subnet_id"]}"\nsource = {{ image = "{f["platform_images"][0]["id"]}" }}\n\n'
        + body
    )


def kiln_apply(kiln, work, adaptive):
    emu = E.Emulators(kiln, work, ["us-ashburn-1"], [COMPARTMENT], 0, 0,
                      ["--rate-limit", f"LaunchInstance={RATE:g}:{BURST}"])
    try:
        d = os.path.join(work.dir, f"rate-{adaptive}-{time.monotonic_ns()}")
        os.makedirs(d)
        with open(os.path.join(d, "kiln.toml"), "w") as m:
            m.write(manifest(emu, work, f"[instance.web]\ncount = {N}\n"))
        env = {} if adaptive else {"KILN_RATE_ADAPT": "off"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            r = E.run([kiln, "apply", "--auto-approve", "--parallelism", str(PAR), d])
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
        stats = emu.stats()
        failed = 0 if r["code"] == 0 else r["stdout"].count("✗") + r["stderr"].count("failed")
        launched = stats.get("LaunchInstance", 0) - stats.get("throttled.LaunchInstance", 0)
        return r["seconds"], stats, launched, r["code"], failed
    finally:
        emu.stop()


def sdk_apply(kiln, work):
    import oci

    emu = E.Emulators(kiln, work, ["us-ashburn-1"], [COMPARTMENT], 0, 0,
                      ["--rate-limit", f"LaunchInstance={RATE:g}:{BURST}"])
    try:
        f = emu.fixtures[0]
        config = oci.config.from_file(work.config, "DEFAULT")
        import threading
        local = threading.local()

        def client():
            if not hasattr(local, "c"):
                local.c = oci.core.ComputeClient(config, service_endpoint=emu.urls[0],
                                                 retry_strategy=oci.retry.DEFAULT_RETRY_STRATEGY)
            return local.c

        def launch(i):
            d = oci.core.models.LaunchInstanceDetails(
                availability_domain=f["availability_domains"][0], compartment_id=COMPARTMENT,
                display_name=f"sdk-{i}", shape="VM.Standard.E4.Flex",
                shape_config=oci.core.models.LaunchInstanceShapeConfigDetails(ocpus=1, memory_in_gbs=16),
                create_vnic_details=oci.core.models.CreateVnicDetails(subnet_id=f["public_subnet_id"]),
                source_details=oci.core.models.InstanceSourceViaImageDetails(image_id=f["platform_images"][0]["id"]),
            )
            try:
                client().launch_instance(d, opc_retry_token=f"bench-{i}")
                return True
            except oci.exceptions.ServiceError:
                return False

        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            ok = list(pool.map(launch, range(N)))
        wall = time.monotonic() - t
        stats = emu.stats()
        return wall, stats, sum(ok), 0 if all(ok) else 1, ok.count(False)
    finally:
        emu.stop()


def fleet(kiln, work):
    n, room = (6, (2, 2, 2)) if SMALL else (30, (12, 12, 6))
    cap = []
    for ad, r in zip((1, 2, 3), room):
        cap += ["--capacity", f"VM.Standard.E4.Flex@AD-{ad}={r}"]
    emu = E.Emulators(kiln, work, ["us-ashburn-1"], [COMPARTMENT], 0, 0, cap)
    try:
        ads = emu.fixtures[0]["availability_domains"]
        d = os.path.join(work.dir, "fleet")
        os.makedirs(d)
        ad_list = ", ".join(f'"{a}"' for a in ads)
        with open(os.path.join(d, "kiln.toml"), "w") as m:
            m.write(manifest(emu, work, f'[instance.web]\ncount = {n}\nplacement = {{ availability_domains = [{ad_list}], fault_domains = "any" }}\n'))
        r = E.check(E.run([kiln, "apply", "--auto-approve", "--parallelism", "1", d]), "the fleet apply")
        stats = emu.stats()
        E.check(E.run([kiln, "plan", "--detailed-exitcode", d]), "the plan after the fleet apply")
        with open(os.path.join(d, "state", "default.json")) as f:
            state = json.load(f)
        landed = {}
        for addr, res in state["resources"].items():
            attrs = res.get("attributes")
            if isinstance(attrs, str):
                attrs = json.loads(attrs)
            landed[addr] = ads.index(attrs["availabilityDomain"])
        return n, room, r, stats, ads, landed
    finally:
        emu.stop()


def expected_fleet(n, room):
    """Where the rule puts each member, applying them one at a time in the order the apply walks
    them (parallelism 1: by address, `web[0]`, `web[1]`, `web[10]`, …): member i wants AD i mod 3;
    when that is full, the next AD of the list, wrapping."""
    used = [0, 0, 0]
    where = [None] * n
    for i in sorted(range(n), key=lambda i: f"instance.web[{i}]"):
        for k in range(3):
            a = (i + k) % 3
            if used[a] < room[a]:
                used[a] += 1
                where[i] = a
                break
    return where


def part_a(kiln, work, floor):
    print(f"A. {N} launches under `--rate-limit LaunchInstance={RATE:g}:{BURST}` (time scale 0), parallelism {PAR}")
    print()
    print("| run | wall (s) | wall ÷ floor | requests | 429s | 429s ÷ requests | launched | failed |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [("kiln (adaptive budget)", lambda: kiln_apply(kiln, work, True)),
            ("kiln, adaptation off (fixed concurrency + retries)", lambda: kiln_apply(kiln, work, False))]
    try:
        import oci  # noqa: F401
        runs.append(("Oracle Python SDK, default retry, 10 threads (launches only)", lambda: sdk_apply(kiln, work)))
    except ImportError:
        print("(python3 cannot import `oci`: the SDK row is skipped)")
    for name, fn in runs:
        wall, stats, launched, code, failed = fn()
        total = stats.get("total", 0)
        t429 = stats.get("throttled", 0)
        print(f"| {name} | {wall:.2f} | {wall / floor:.3f} | {total} | {t429} | {100 * t429 / max(total, 1):.1f} % | {launched} | {failed} |")
    print()


def main():
    kiln = E.kiln_binary()
    work = E.Work()
    floor = N / RATE
    try:
        if os.environ.get("ONLY_FLEET") != "1":
            part_a(kiln, work, floor)
        n, room, r, stats, ads, landed = fleet(kiln, work)
        print(f"B. A fleet of {n} over 3 ADs with room {'/'.join(map(str, room))}, `fault_domains = \"any\"`, parallelism 1")
        print()
        want = expected_fleet(n, room)
        got = [landed.get(f"instance.web[{i}]") for i in range(n)]
        wrong = [i for i in range(n) if got[i] != want[i]]
        print("| placed | per AD (1/2/3) | where the rule says | API calls | LaunchInstance | of which out of capacity | apply (s) |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {sum(g is not None for g in got)}/{n} | {'/'.join(str(got.count(a)) for a in range(3))} | "
              f"{'all' if not wrong else 'not ' + str(wrong)} | {stats.get('total', 0)} | {stats.get('LaunchInstance', 0)} | "
              f"{stats.get('errors.LaunchInstance', 0)} | {r['seconds']:.2f} |")
    finally:
        work.close()


if __name__ == "__main__":
    main()
