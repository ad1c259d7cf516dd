# An agent has one set of site params; its id is always "site".
terraform import baremetal_site_params.site site
