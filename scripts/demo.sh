#!/usr/bin/env bash
# make demo: provision a cluster of three QEMU machines with terraform apply,
# over real Redfish (the lab's BMC emulator) and real network boot (iPXE
# over HTTP from the agent). Everything runs on loopback; each VM's network
# is isolated (QEMU user networking with restrict=on) and reaches only the
# agent's boot endpoints, at 10.0.2.4, through a guest forward.
#
#   scripts/demo.sh up     set up, start agent + lab, terraform apply, print outputs
#   scripts/demo.sh down   terraform destroy (best effort) and stop every process
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=${DEMO_DIR:-$root/.cache/demo}
machines=${DEMO_MACHINES:-3}
example=${DEMO_EXAMPLE:-$root/examples/quickstart}
api_port=${DEMO_API_PORT:-18443}
boot_port=${DEMO_BOOT_PORT:-18080}
tftp_port=${DEMO_TFTP_PORT:-16969}
lab_port=${DEMO_LAB_PORT:-18000}
image=${BAREMETAL_LAB_IMAGE:-$root/.cache/lab-image}
# qemu: real VMs booting over PXE; memory: simulated machines (seconds, for a
# quick look at the Terraform side).
backend=${DEMO_BACKEND:-qemu}
# Odd-numbered machines boot BIOS (SeaBIOS), even ones UEFI (OVMF).
firmware=${DEMO_FIRMWARE:-mixed}

log() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

install_packages() {
  local need=()
  for pkg in qemu-system-x86 ipxe-qemu ipxe ovmf busybox-static cpio curl jq; do
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
}

up() {
  install_packages
  log "building binaries and the lab installer image"
  make -s build
  make -s lab-image LAB_IMAGE_DIR="$image"
  down_processes
  mkdir -p "$state/agent" "$state/lab"
  rm -rf "$state/agent/"* "$state/lab/"* "$example/terraform.tfstate"*
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
    --assets-dir "$image" >"$state/agent.log" 2>&1 &
  echo $! > "$state/agent.pid"
  wait_http "https://127.0.0.1:$api_port/healthz"

  log "starting the lab: $machines $backend machines ($firmware firmware) behind an emulated Redfish BMC on :$lab_port"
  bin/baremetal-agent lab --backend "$backend" --machines "$machines" --firmware "$firmware" \
    --listen 127.0.0.1:$lab_port --inventory "$state/inventory.json" \
    --boot-url http://$boot_host:$boot_port --state-dir "$state/lab" >"$state/lab.log" 2>&1 &
  echo $! > "$state/lab.pid"
  for _ in $(seq 1 100); do [ -s "$state/inventory.json" ] && break; sleep 0.1; done

  terraform_env
  cd "$example"
  log "terraform apply in ${example#$root/} (serial consoles: $state/lab/*.serial.log)"
  start=$(date +%s)
  # Modules only: the provider comes from dev_overrides, so nothing is downloaded.
  terraform get >/dev/null
  terraform apply -auto-approve -input=false
  log "converged in $(( $(date +%s) - start )) s; outputs:"
  timings
  log "tear down with: make demo-down"
}

# timings prints each machine's firmware (from the lab's inventory) and how
# long it took from the power-on of its last run to provisioned, from the
# agent's event log (a power action's issued_at is when it was sent).
timings() {
  log "firmware and time per machine (power-on -> provisioned):"
  local names
  names=$(curl -sk -H "Authorization: Bearer $BAREMETAL_TOKEN" "$BAREMETAL_ENDPOINT/v1/machines" | jq -r '.items[].name')
  for n in $names; do
    local fw
    fw=$(jq -r --arg n "$n" '.machines[] | select(.name == $n) | .firmware // "?"' "$state/inventory.json")
    curl -sk -H "Authorization: Bearer $BAREMETAL_TOKEN" "$BAREMETAL_ENDPOINT/v1/machines/$n/events?limit=1000" | jq -r --arg n "$n" --arg fw "$fw" '
      def secs: sub("\\.[0-9]+"; "") | fromdateiso8601;
      [.events[] | select(.type == "power_action" and (.data.run // "") != "")] as $ons
      | [.events[] | select(.type == "phase_changed" and .phase == "provisioned")] as $done
      | if ($ons | length) > 0 and ($done | length) > 0 then
          (($done[-1].time | secs) - (($ons[-1].data.issued_at // $ons[-1].time) | secs)) as $s
          | "  \($n): \($fw | ascii_upcase), \($s) s"
        else "  \($n): \($fw | ascii_upcase), not provisioned" end'
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
