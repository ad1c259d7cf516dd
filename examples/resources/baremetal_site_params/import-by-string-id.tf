import {
  to = baremetal_site_params.site
  id = "site"
}
