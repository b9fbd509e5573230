"""Shared by the Python benchmark scripts (estate.py, first_apply.py): the kiln binary, a work
folder with an OCI config trusting the fixed test key, `kiln emulator` serving one or more regions
(its request counts and CPU time), and kiln runs measured with their own resource usage (wall,
user + system CPU, peak RSS, from wait4).

env: KILN (binary; default: `cargo build --release`, target/release/kiln)
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINGERPRINT = "f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed"


def kiln_binary():
    if os.environ.get("KILN"):
        return os.environ["KILN"]
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "kiln")


class Work:
    """A temporary folder (removed by `close`) with an OCI config for the test key."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kiln-bench-")
        self.config = os.path.join(self.dir, "config")
        key = os.path.join(ROOT, "tests", "fixtures", "signing", "keys", "pkcs1.pem")
        with open(self.config, "w") as f:
            f.write(
                "[DEFAULT]\nuser=ocid1.user.oc1..aaaatest\ntenancy=ocid1.tenancy.oc1..aaaatest\n"
                f"fingerprint={FINGERPRINT}\nkey_file={key}\nregion=us-ashburn-1\n"
            )

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def get(url):
    return json.load(urllib.request.urlopen(url))


class Emulators:
    """One `kiln emulator` process serving `regions` (one port each)."""

    def __init__(self, kiln, work, regions, compartments, time_scale, latency_ms, extra=()):
        self.out = os.path.join(work.dir, f"emu-{time.monotonic_ns()}.out")
        args = [kiln, "emulator", "--listen", "127.0.0.1:0", "--oci-config", work.config,
                "--time-scale", str(time_scale), "--latency-ms", str(latency_ms), *extra]
        for r in regions:
            args += ["--region", r]
        for c in compartments:
            args += ["--compartment", c]
        self.proc = subprocess.Popen(args, stdout=open(self.out, "w"), stderr=subprocess.DEVNULL)
        self.urls = []
        for _ in range(400):
            with open(self.out) as f:
                self.urls = [l.split("listening on ", 1)[1].strip() for l in f if l.startswith("listening on ")]
            if len(self.urls) == len(regions):
                break
            if self.proc.poll() is not None:
                raise SystemExit("the emulator exited")
            time.sleep(0.05)
        else:
            raise SystemExit("the emulator did not start")
        self.fixtures = [get(u + "/_emulator/fixtures") for u in self.urls]

    def stats(self):
        """Request counts per operation, summed over the regions."""
        total = {}
        for u in self.urls:
            for k, v in get(u + "/_emulator/stats").items():
                total[k] = total.get(k, 0) + v
        return total

    def cpu(self):
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def run(args, cwd=None):
    """Run a command to the end: wall seconds, user + system CPU seconds, peak RSS (MiB), exit
    code and output (its own figures, from wait4)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    t = time.monotonic()
    p = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                         env={**os.environ, "NO_COLOR": "1"})
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    out.seek(0)
    err.seek(0)
    return {
        "seconds": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss_mib": ru.ru_maxrss / 1024,
        "code": os.waitstatus_to_exitcode(status),
        "stdout": out.read().decode(errors="replace"),
        "stderr": err.read().decode(errors="replace"),
    }


def check(r, what, codes=(0,)):
    if r["code"] not in codes:
        raise SystemExit(f"{what} exited {r['code']}:\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
    return r


def header(emu, region_index=0, endpoints=True):
    """`[provider]` for the emulators: the first region is the default, the others by endpoint."""
    regions = [f["region"] for f in emu.fixtures]
    text = f'[provider]\nendpoint = "{emu.urls[region_index]}"\nregion = "{regions[region_index]}"\n'
    others = [f'{r} = "{u}"' for i, (r, u) in enumerate(zip(regions, emu.urls)) if i != region_index]
    if endpoints and others:
        text += "endpoints = { " + ", ".join(others) + " }\n"
    return text
