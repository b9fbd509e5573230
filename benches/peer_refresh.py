"""The per-resource refresh peer: what Terraform's OCI provider (and Pulumi) do on refresh —
one GetInstance per managed instance, 10 in parallel — with Oracle's Python SDK (`oci` on PyPI),
against the same emulator. Prints wall seconds, calls (from the emulator's stats) and peak RSS
as JSON.

usage: python3 peer_refresh.py CONFIG_FILE ENDPOINT IDS_FILE
ENDPOINT is one URL, or `CODE=URL,CODE=URL` (a region's 3-letter code, as in the OCIDs: each
instance is read from its region's endpoint).
"""
import json
import resource
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import oci

config_file, endpoint, ids_file = sys.argv[1:4]
config = oci.config.from_file(config_file, "DEFAULT")
ids = [line.strip() for line in open(ids_file) if line.strip()]
if "=" in endpoint:
    endpoints = dict(pair.split("=", 1) for pair in endpoint.split(","))
else:
    endpoints = {None: endpoint}
local = __import__("threading").local()


def client(code):
    if not hasattr(local, "c"):
        local.c = {}
    if code not in local.c:
        url = endpoints.get(code) or endpoints.get(None)
        local.c[code] = oci.core.ComputeClient(config, service_endpoint=url)
    return local.c[code]


def get(i):
    code = i.split(".")[3] if None not in endpoints else None
    return client(code).get_instance(i).data.lifecycle_state


def total_calls():
    return sum(json.load(urllib.request.urlopen(u + "/_emulator/stats")).get("total", 0) for u in set(endpoints.values()))


before = total_calls()
start = time.monotonic()
with ThreadPoolExecutor(max_workers=10) as pool:
    states = list(pool.map(get, ids))
elapsed = time.monotonic() - start
assert len(states) == len(ids)
print(json.dumps({"seconds": elapsed, "calls": total_calls() - before, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
