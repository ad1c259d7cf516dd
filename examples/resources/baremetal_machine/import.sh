# A machine is imported by its name. BMC passwords are never returned by the
# agent: after an import, the next apply sends the configured password again.
terraform import baremetal_machine.web web-01
