# What web-1 would fetch as its kickstart right now, the run token shown
# as <token>: review it in a plan, or write it out for ksvalidator.
data "baremetal_rendered_template" "kickstart" {
  machine  = "web-1"
  template = "kickstart"
}

output "kickstart" {
  value = data.baremetal_rendered_template.kickstart.content
}
