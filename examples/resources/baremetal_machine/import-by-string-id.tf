import {
  to = baremetal_machine.web
  id = "web-01"
}
