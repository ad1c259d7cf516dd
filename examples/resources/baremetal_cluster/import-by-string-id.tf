import {
  to = baremetal_cluster.k8s
  id = "k8s-site1"
}
