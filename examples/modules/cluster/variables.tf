variable "name" {
  description = "Cluster name; also the prefix of its boot profiles."
  type        = string
}

variable "nodes" {
  description = "Machines by name: how to reach each one's BMC and which role it plays. Leave macs unset to discover them from the BMC. Bump a node's bmc_password_change when its password in bmc_passwords changes."
  type = map(object({
    role                = string
    bmc_endpoint        = string
    bmc_username        = string
    bmc_password_change = optional(number, 1)
    bmc_insecure        = optional(bool, false)
    bmc_ca_cert_pem     = optional(string)
    macs                = optional(list(string))
    params              = optional(map(string), {})
  }))
}

variable "bmc_passwords" {
  description = "BMC password of each node, by node name. Ephemeral: it may come from an ephemeral resource or a secret store, and it lands in no plan file and no state (the machines take it as the write-only password_wo)."
  type        = map(string)
  sensitive   = true
  ephemeral   = true
}

variable "roles" {
  description = "Roles in provisioning order (every member of a role is installed before the next role starts), each with the boot profile its members install: a kernel (an installer) or an image (written to disk by the agent's deploy ramdisk)."
  type = list(object({
    name    = string
    kernel  = optional(string)
    initrds = optional(list(string), [])
    cmdline = optional(string, "")
    image = optional(object({
      url      = string
      checksum = string
      format   = string
      wipe     = optional(string)
    }))
    templates = optional(map(string), {})
    params    = optional(map(string), {})
  }))
}

variable "params" {
  description = "Parameters every member's templates see as .Params (cluster-wide; machine params override them)."
  type        = map(string)
  default     = {}
}

variable "max_unavailable" {
  description = "How many members of a role may be re-provisioning at once when its profile changes."
  type        = number
  default     = 1
}

variable "timeouts" {
  description = "How long a create or update may wait for the machines and the cluster to converge."
  type        = string
  default     = "60m"
}
