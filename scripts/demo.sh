#!/usr/bin/env bash
# make demo: install real Debian on a cluster of three QEMU machines with
# terraform apply (examples/etcd-cluster), over real Redfish (the lab's BMC
# emulator) and real network boot (iPXE over HTTP from the agent), BIOS and
# UEFI mixed. The agent's deploy ramdisk writes the lab's Debian image (make
# os-image) to each disk; the control plane's cloud-init starts etcd, and
# each worker registers itself in it before it reports "OS up". Everything
# runs on loopback; each VM's network is isolated (QEMU user networking with
# restrict=on) and reaches only the agent's boot endpoints, at 10.0.2.4, and
# the control plane's etcd port, at the control plane's own address, both
# through guest forwards. The demo ends by reading the registrations from
# that etcd through a host forward.
#
#   scripts/demo.sh up     set up, start agent + lab, terraform apply, print outputs
#   scripts/demo.sh down   terraform destroy (best effort) and stop every process
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=${DEMO_DIR:-$root/.cache/demo}
machines=${DEMO_MACHINES:-3}
example=$root/examples/etcd-cluster
api_port=${DEMO_API_PORT:-18443}
boot_port=${DEMO_BOOT_PORT:-18080}
tftp_port=${DEMO_TFTP_PORT:-16969}
lab_port=${DEMO_LAB_PORT:-18000}
# The control plane's etcd (guest port 2379) on the host's loopback.
etcd_port=${DEMO_ETCD_PORT:-12379}
deploy_image=${BAREMETAL_DEPLOY_IMAGE:-$root/.cache/deploy-image}
os_image_dir=${OS_IMAGE_DIR:-$root/.cache/os-image}
os_image=debian-12-amd64.raw
# qemu: real VMs booting over PXE and running Debian; memory: simulated
# machines that play the deploy protocol (seconds, for a quick look at the
# Terraform side).
backend=${DEMO_BACKEND:-qemu}
# Odd-numbered machines boot BIOS (SeaBIOS), even ones UEFI (OVMF).
firmware=${DEMO_FIRMWARE:-mixed}
# Debian with cloud-init and etcd wants more than the lab's default 256 MiB.
memory=${DEMO_MEMORY_MIB:-1024}

log() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

install_packages() {
  local need=()
  # The deploy ramdisk's build needs cpio, xz-utils and zstd; the OS image's
  # build (as root) installs its own tools.
  for pkg in qemu-system-x86 ipxe-qemu ipxe ovmf busybox-static cpio xz-utils zstd curl jq; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
  fi
  command -v terraform >/dev/null || { echo "terraform (>= 1.11) is not on PATH" >&2; exit 1; }
}

stop_pid() { # name: stop the process recorded in $state/name.pid and wait for it
  local f=$state/$1.pid
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

wait_http() { # url: until it answers
  for _ in $(seq 1 150); do
    curl -sk -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "timed out waiting for $1" >&2
  return 1
}

terraform_env() {
  export TF_CLI_CONFIG_FILE=$state/terraformrc
  export TF_IN_AUTOMATION=1
  export BAREMETAL_ENDPOINT=https://127.0.0.1:$api_port
  export BAREMETAL_TOKEN; BAREMETAL_TOKEN=$(grep -v '^#' "$state/tokens" | head -1)
  export BAREMETAL_CA_CERT_PEM; BAREMETAL_CA_CERT_PEM=$(cat "$state/agent/api-cert.pem" 2>/dev/null || true)
  export TF_VAR_inventory_file=$state/inventory.json
  # The image up() chose: destroy needs the same variables as apply.
  # shellcheck disable=SC1091
  [ ! -f "$state/image.env" ] || . "$state/image.env"
}

# sudo_root: run as root (the OS image's build needs it).
sudo_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

up() {
  install_packages
  local t0; t0=$(date +%s)
  log "building binaries and the agent's deploy ramdisk"
  make -s build
  make -s deploy-image DEPLOY_IMAGE_DIR="$deploy_image"
  down_processes
  mkdir -p "$state/agent" "$state/lab" "$state/assets"
  rm -rf "$state/agent/"* "$state/lab/"* "$state/assets/"* "$example/terraform.tfstate"*

  # The image the machines install, served from the agent's assets
  # directory (the VMs reach nothing else). The memory backend's simulated
  # machines fetch and hash an image but write nothing, so a small random
  # file stands in for Debian there and the variant needs no image build.
  local image_url image_format image_file disk_mib=64
  if [ "$backend" = qemu ]; then
    log "building the lab's Debian image (make os-image; about 15 minutes the first time, a no-op afterwards)"
    sudo_root ./scripts/build-os-image.sh "$os_image_dir"
    image_url=$os_image.zst image_format=zstd
    ln -f "$os_image_dir/$image_url" "$state/assets/$image_url" 2>/dev/null || cp "$os_image_dir/$image_url" "$state/assets/$image_url"
    # Room for the image, the 64 MiB config drive and the GPT's backup.
    disk_mib=$(( $(stat -c %s "$os_image_dir/$os_image") / 1048576 + 128 ))
  else
    image_url=memory-lab.raw image_format=raw
    head -c 8388608 /dev/urandom >"$state/assets/$image_url"
  fi
  image_file=$state/assets/$image_url
  printf 'export TF_VAR_image_url=%q TF_VAR_image_format=%q TF_VAR_image_checksum=%q\n' \
    "$image_url" "$image_format" "sha256:$(sha256sum "$image_file" | awk '{print $1}')" >"$state/image.env"
  . "$state/image.env"
  log "image: $image_url ($image_format, $TF_VAR_image_checksum)"

  umask 077
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/tokens"; echo >> "$state/tokens"
  umask 022
  cat > "$state/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "openbaremetal/baremetal" = "$root/bin"
  }
  direct {}
}
RC

  # The VMs reach the agent's boot endpoints only as 10.0.2.4, which the
  # lab forwards to the host's loopback, so that is the address handed to
  # them.
  local boot_host=10.0.2.4
  [ "$backend" = qemu ] || boot_host=127.0.0.1
  log "starting baremetal-agent (API https://127.0.0.1:$api_port, boot http://127.0.0.1:$boot_port, TFTP :$tftp_port)"
  bin/baremetal-agent serve \
    --data-dir "$state/agent" --token-file "$state/tokens" \
    --api-addr 127.0.0.1:$api_port --boot-addr 127.0.0.1:$boot_port \
    --boot-url http://$boot_host:$boot_port --tftp-addr 127.0.0.1:$tftp_port \
    --assets-dir "$state/assets" --deploy-image-dir "$deploy_image" >"$state/agent.log" 2>&1 &
  echo $! > "$state/agent.pid"
  wait_http "https://127.0.0.1:$api_port/healthz"

  # The first machine is the control plane: its etcd is published on the
  # host (for the demo to read) and, at its own address, to the other VMs.
  local first; first=lab-1
  log "starting the lab: $machines $backend machines ($firmware firmware) behind an emulated Redfish BMC on :$lab_port"
  bin/baremetal-agent lab --backend "$backend" --machines "$machines" --firmware "$firmware" \
    --listen 127.0.0.1:$lab_port --inventory "$state/inventory.json" \
    --memory "$memory" --disk-mib "$disk_mib" --hostfwd "$first=$etcd_port:2379" --hostfwd-peers \
    --boot-url http://$boot_host:$boot_port --state-dir "$state/lab" >"$state/lab.log" 2>&1 &
  echo $! > "$state/lab.pid"
  for _ in $(seq 1 100); do [ -s "$state/inventory.json" ] && break; sleep 0.1; done

  terraform_env
  cd "$example"
  log "terraform apply in ${example#$root/} (serial consoles: $state/lab/*.serial.log)"
  local start; start=$(date +%s)
  # Modules only: the provider comes from dev_overrides, so nothing is downloaded.
  terraform get >/dev/null
  terraform apply -auto-approve -input=false
  local now; now=$(date +%s)
  log "converged in $(( now - start )) s ($(( now - t0 )) s with the builds); outputs:"
  timings
  registrations
  log "tear down with: make demo-down"
}

# registrations reads every /members/ key from the control plane's etcd
# through the host forward (etcd's JSON gateway, so the host needs no
# etcdctl), and fails when a member is missing.
registrations() {
  local names; names=$(jq -r '.machines[].name' "$state/inventory.json")
  if [ "$backend" != qemu ]; then
    log "the memory backend's machines run no OS, so there is no etcd to read"
    return 0
  fi
  log "registrations in the control plane's etcd (read through 127.0.0.1:$etcd_port):"
  local body kvs
  # range [/members/, /members0): every key under /members/.
  body=$(jq -cn '{key: ("/members/" | @base64), range_end: ("/members0" | @base64)}')
  kvs=$(curl -sS --max-time 20 -X POST -d "$body" "http://127.0.0.1:$etcd_port/v3/kv/range") ||
    { echo "demo: no answer from etcd on 127.0.0.1:$etcd_port" >&2; return 1; }
  jq -r '.kvs // [] | .[] | "  \(.key | @base64d) = \(.value | @base64d)"' <<<"$kvs"
  local missing=0
  for n in $names; do
    jq -e --arg k "/members/$n" '.kvs // [] | any(.key | @base64d == $k)' <<<"$kvs" >/dev/null ||
      { echo "demo: $n is not registered in etcd" >&2; missing=1; }
  done
  return $missing
}

# timings prints each machine's firmware (from the lab's inventory) and,
# for its last run, the time from the run's first power-on to the image
# written and to the OS up (its OS-up callback), from the agent's event log
# (a power action's issued_at is when it was sent).
timings() {
  log "firmware and time per machine (power-on -> image written -> OS up):"
  local names
  names=$(curl -sk -H "Authorization: Bearer $BAREMETAL_TOKEN" "$BAREMETAL_ENDPOINT/v1/machines" | jq -r '.items[].name')
  for n in $names; do
    local fw
    fw=$(jq -r --arg n "$n" '.machines[] | select(.name == $n) | .firmware // "?"' "$state/inventory.json")
    curl -sk -H "Authorization: Bearer $BAREMETAL_TOKEN" "$BAREMETAL_ENDPOINT/v1/machines/$n/events?limit=1000" | jq -r --arg n "$n" --arg fw "$fw" '
      def secs: sub("\\.[0-9]+"; "") | fromdateiso8601;
      [.events[] | select(.type == "callback_received" and .data.stage == "os_up" and .data.status == "ok")] as $up
      | if ($up | length) == 0 then "  \($n): \($fw | ascii_upcase), no OS-up report"
        else
          $up[-1] as $u
          | [.events[] | select(.type == "power_action" and .data.run == $u.data.run)][0] as $on
          | [.events[] | select(.type == "image_written" and .data.run == $u.data.run)][-1] as $w
          | (($on.data.issued_at // $on.time) | secs) as $t0
          | "  \($n): \($fw | ascii_upcase), image written after \(if $w then (($w.time | secs) - $t0 | tostring) + " s" else "?" end), OS up after \(($u.time | secs) - $t0) s"
        end'
  done
}

down_processes() {
  stop_pid lab
  stop_pid agent
}

down() {
  if [ -f "$state/agent.pid" ] && [ -f "$state/tokens" ] && [ -f "$example/terraform.tfstate" ]; then
    terraform_env
    (cd "$example" && timeout 300 terraform destroy -auto-approve -input=false) || log "terraform destroy failed; stopping processes anyway"
  fi
  down_processes
  pkill -f "$state/lab" 2>/dev/null || true # any VM the lab left behind
  log "stopped"
}

case "${1:-up}" in
  up)
    trap 'echo; log "interrupted: tearing down"; down; exit 130' INT TERM
    up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
