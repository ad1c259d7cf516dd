terraform {
  required_version = ">= 1.11"
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}
