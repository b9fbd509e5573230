"""Benchmark scenario 4: the seed workflow side by side — pycloudlib (PyPI) launch + snapshot vs
`kiln apply` of the equivalent manifest (one instance, one image captured from it), each against
a fresh `kiln emulator` with the same settings (`--time-scale`, `--latency-ms`). Prints one
markdown table.

usage: python3 benches/pycloudlib_vs_kiln.py
env:   KILN (binary; default: cargo build --release, target/release/kiln)
       TIME_SCALE (0.05)  LATENCY_MS (50)
       SMALL=1 (a smoke run: TIME_SCALE=0.002, LATENCY_MS=5)

How pycloudlib is pointed at the emulator: `pycloudlib.oci.cloud.OCI` (and the `OciInstance` it
returns) build `oci.core.ComputeClient` / `oci.core.VirtualNetworkClient` from the OCI config with
no endpoint parameter, so this script wraps those two constructors to pass
`service_endpoint=<emulator URL>` (everything else is pycloudlib's own code path). The OCI config
is passed as `config_dict` and the VCN by name, so no pycloudlib.toml is needed.

What is run, per tool:
- pycloudlib: `daily_image("9", "Oracle Linux")` (ListImages, newest first), `launch()`
  (ListVcns by name, ListSubnets, GetSubnet, LaunchInstance, GetInstance), the API half of
  `instance.wait()` (`_wait_for_instance_start`: GetInstance every 1 s until RUNNING), then
  `snapshot(instance, clean=False)` (CreateImage of the RUNNING instance, GetImage every 1 s until
  AVAILABLE). Skipped, because the emulator runs no VMs: the SSH half of `wait()` (cloud-init
  status over SSH) and `clean=True` (`cloud-init clean` over SSH before the capture).
- kiln: `kiln apply --auto-approve` of a manifest with the same instance (same image lookup,
  shape, subnet, SSH key) and `[image.golden] from_instance = "instance.builder"`. kiln stops the
  source before the capture (a consistent disk) and starts it again after (`restart_source`),
  so its DAG is launch → stop → capture → start, where pycloudlib's is launch → capture.

"critical path" is the sum of the emulator's scaled lifecycle durations each tool must wait
through (launch 60 s, stop 30 s, capture 480 s, start 30 s at scale 1.0); wall ÷ critical path is
each tool's overhead (polling, round trips, start-up).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.environ.get("SMALL") == "1"
SCALE = float(os.environ.get("TIME_SCALE", "0.002" if SMALL else "0.05"))
LATENCY = int(os.environ.get("LATENCY_MS", "5" if SMALL else "50"))
LAUNCH, STOP, START, CAPTURE = 60.0, 30.0, 30.0, 480.0
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaabenchseed"
AD = "kIdk:US-ASHBURN-AD-1"
SHAPE = "VM.Standard.E4.Flex"

# --- the pycloudlib side, run in its own process (its own RSS and import time) -----------------
CHILD = r'''
import json, sys, time
t0 = time.monotonic()
import oci
from pycloudlib.oci.cloud import OCI
imported = time.monotonic() - t0

config_file, url, pub, priv, compartment, ad, shape = sys.argv[1:8]

def with_endpoint(cls):
    original = cls.__init__
    def init(self, config, **kwargs):
        kwargs.setdefault("service_endpoint", url)
        original(self, config, **kwargs)
    cls.__init__ = init

with_endpoint(oci.core.ComputeClient)
with_endpoint(oci.core.VirtualNetworkClient)

t = time.monotonic()
cloud = OCI(
    "kiln-bench-seed",
    timestamp_suffix=False,
    availability_domain=ad,
    compartment_id=compartment,
    config_dict=oci.config.from_file(config_file),
    vcn_name="kiln-emulator-vcn",
)
cloud.use_key(pub, priv)
image_id = cloud.daily_image("9", operating_system="Oracle Linux")
instance = cloud.launch(
    image_id,
    instance_type=shape,
    shape_config=oci.core.models.LaunchInstanceShapeConfigDetails(ocpus=1, memory_in_gbs=16),
)
instance._wait_for_instance_start()
image = cloud.snapshot(instance, clean=False, name="golden")
wall = time.monotonic() - t
state = cloud.compute_client.get_image(image).data.lifecycle_state
assert state == "AVAILABLE", state
print(json.dumps({"seconds": wall, "import_seconds": imported, "image": image}))
'''


def kiln_binary():
    if os.environ.get("KILN"):
        return os.environ["KILN"]
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "kiln")


class Emulator:
    def __init__(self, kiln, config, work):
        self.out = open(os.path.join(work, "emulator.out"), "w+")
        self.proc = subprocess.Popen(
            [kiln, "emulator", "--listen", "127.0.0.1:0", "--oci-config", config,
             "--compartment", COMPARTMENT,
             "--time-scale", str(SCALE), "--latency-ms", str(LATENCY)],
            stdout=self.out, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                self.out.seek(0)
                line = self.out.readline()
                if line.startswith("listening on "):
                    self.url = line.split()[-1]
                    break
                time.sleep(0.05)
            else:
                raise SystemExit("the emulator did not start")
            self.fixtures = self.get("fixtures")
        except BaseException:
            self.stop()
            raise

    def get(self, what):
        return json.load(urllib.request.urlopen(f"{self.url}/_emulator/{what}"))

    def stats(self):
        return self.get("stats")

    @staticmethod
    def diff(before, after):
        """Calls by operation between two stats snapshots, and the total."""
        d = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
        return d.pop("total", 0), d

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.out.close()


def measured(cmd, work):
    """Run `cmd`: (exit code, stdout, stderr, wall seconds, peak RSS in MiB of that process)."""
    with open(os.path.join(work, "out"), "w+") as out, open(os.path.join(work, "err"), "w+") as err:
        t = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), wall, usage.ru_maxrss / 1024


def run_pycloudlib(kiln, config, work, pub, priv):
    emu = Emulator(kiln, config, work)
    try:
        before = emu.stats()
        code, out, err, _, rss = measured([sys.executable, "-c", CHILD, config, emu.url, pub, priv,
                                           COMPARTMENT, AD, SHAPE], work)
        if code != 0:
            raise SystemExit("pycloudlib failed:\n" + err[-4000:])
        r = json.loads(out.strip().splitlines()[-1])
        r["calls"], r["by_operation"] = Emulator.diff(before, emu.stats())
        r["peak_rss_mib"] = rss
        return r
    finally:
        emu.stop()


def run_kiln(kiln, config, work, pub):
    emu = Emulator(kiln, config, work)
    try:
        d = os.path.join(work, "seed")
        os.makedirs(d)
        with open(os.path.join(d, "kiln.toml"), "w") as f:
            f.write(f'''[provider]
endpoint = "{emu.url}"
config_file = "{config}"

[defaults]
compartment = "{COMPARTMENT}"
availability_domain = "{AD}"
shape = "{SHAPE}"
shape_config = {{ ocpus = 1, memory_in_gbs = 16 }}
subnet = "{emu.fixtures["public_subnet_id"]}"
assign_public_ip = true
ssh_authorized_keys_file = "{pub}"

[instance.builder]
display_name = "kiln-bench-seed"
source = {{ image_lookup = {{ os = "Oracle Linux", version = "9" }} }}

[image.golden]
from_instance = "instance.builder"
display_name = "golden"
''')
        before = emu.stats()
        code, out, err, wall, rss = measured([kiln, "apply", "--auto-approve", d], work)
        calls, by_operation = Emulator.diff(before, emu.stats())
        if code != 0:
            raise SystemExit("kiln apply failed:\n" + out[-3000:] + err[-3000:])
        q = subprocess.run([kiln, "plan", "--detailed-exitcode", d], capture_output=True, text=True)
        if q.returncode != 0:
            raise SystemExit("the second kiln plan is not empty:\n" + q.stdout[-3000:])
        return {"seconds": wall, "calls": calls, "by_operation": by_operation, "peak_rss_mib": rss}
    finally:
        emu.stop()


def main():
    kiln = kiln_binary()
    work = tempfile.mkdtemp(prefix="kiln-seed-bench-")
    try:
        config = os.path.join(work, "oci-config")
        key = os.path.join(ROOT, "tests", "fixtures", "signing", "keys", "pkcs1.pem")
        with open(config, "w") as f:
            f.write("[DEFAULT]\nuser=ocid1.user.oc1..aaaatest\ntenancy=ocid1.tenancy.oc1..aaaatest\n"
                    "fingerprint=f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed\n"
                    f"key_file={key}\nregion=us-ashburn-1\n")
        priv = os.path.join(work, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kiln-bench", "-f", priv],
                       check=True, stdout=subprocess.DEVNULL)
        pub = priv + ".pub"
        py = run_pycloudlib(kiln, config, work, pub, priv)
        kl = run_kiln(kiln, config, work, pub)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    py_path = (LAUNCH + CAPTURE) * SCALE
    kl_path = (LAUNCH + STOP + CAPTURE + START) * SCALE
    print(f"time scale ×{SCALE} (launch {LAUNCH * SCALE:g} s, stop/start {STOP * SCALE:g} s, "
          f"capture {CAPTURE * SCALE:g} s), latency {LATENCY} ms")
    print()
    print("| tool | what it waits through | wall (s) | critical path (s) | wall ÷ critical path "
          "| API calls | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| pycloudlib (+ Python start-up and import: {py['import_seconds']:.2f} s, not counted) "
          f"| launch → capture (running) | {py['seconds']:.2f} | {py_path:.2f} "
          f"| {py['seconds'] / py_path:.3f} | {py['calls']} | {py['peak_rss_mib']:.0f} |")
    print(f"| kiln apply | launch → stop → capture → start | {kl['seconds']:.2f} | {kl_path:.2f} "
          f"| {kl['seconds'] / kl_path:.3f} | {kl['calls']} | {kl['peak_rss_mib']:.0f} |")
    print()
    for name, r in (("pycloudlib", py), ("kiln", kl)):
        ops = ", ".join(f"{k} {v}" for k, v in sorted(r["by_operation"].items()))
        print(f"- {name} API calls by operation: {ops}")


if __name__ == "__main__":
    main()
