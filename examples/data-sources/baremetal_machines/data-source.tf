# Every registered machine not yet in use with at least 64 GiB of memory.
data "baremetal_machines" "spare" {
  state          = "available"
  min_memory_gib = 64
}

output "spare_machines" {
  value = data.baremetal_machines.spare.names
}

# The workers of a cluster and the addresses they reported.
data "baremetal_machines" "workers" {
  cluster = "k8s-site1"
  role    = "worker"
}

output "worker_addresses" {
  value = { for m in data.baremetal_machines.workers.machines : m.name => m.addresses }
}
