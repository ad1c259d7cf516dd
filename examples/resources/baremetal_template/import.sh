# A template (snippet) is imported by its name.
terraform import baremetal_template.motd motd
