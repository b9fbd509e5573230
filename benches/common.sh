# Shared by the benchmark scripts (sourced, from the repository root): the kiln binary, a work
# folder removed on exit, an OCI config trusting the fixed test key, and an emulator on a free port.
#   env: KILN (binary; default: cargo build --release, target/release/kiln)

if [ -z "${KILN:-}" ]; then
  cargo build --release --quiet
  KILN=target/release/kiln
fi
kiln=$KILN
work=$(mktemp -d)
emu_pid=
trap '[ -n "$emu_pid" ] && kill $emu_pid 2>/dev/null; rm -rf "$work"; true' EXIT

# The key and config private to this user, as OCI's tools want them (kiln warns otherwise).
install -m 600 tests/fixtures/signing/keys/pkcs1.pem "$work/key.pem"
cat > "$work/config" <<CFG
[DEFAULT]
user=ocid1.user.oc1..aaaatest
tenancy=ocid1.tenancy.oc1..aaaatest
fingerprint=f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed
key_file=$work/key.pem
region=us-ashburn-1
CFG
chmod 600 "$work/config"

# start_emulator [EMULATOR FLAGS…]: sets emu_pid, url, and the seeded subnet and image ids.
start_emulator() {
  # The benches' compartment: the emulator answers 404 for compartments it does not know.
  "$kiln" emulator --listen 127.0.0.1:0 --oci-config "$work/config" --compartment ocid1.compartment.oc1..aaaaaaaabench "$@" > "$work/emu.out" 2> "$work/emu.err" &
  emu_pid=$!
  for _ in $(seq 1 200); do
    head -1 "$work/emu.out" 2>/dev/null | grep -q listening && break
    sleep 0.05
  done
  url=$(head -1 "$work/emu.out" | sed 's/listening on //')
  [ -n "$url" ] || { echo "the emulator did not start" >&2; cat "$work/emu.err" >&2; exit 1; }
  fx=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$url/_emulator/fixtures")
  subnet=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["public_subnet_id"])' <<<"$fx")
  image=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["platform_images"][0]["id"])' <<<"$fx")
}

stop_emulator() {
  kill $emu_pid; wait $emu_pid 2>/dev/null || true
  emu_pid=
}
