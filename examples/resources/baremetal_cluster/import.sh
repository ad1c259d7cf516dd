# A cluster is imported by its name.
terraform import baremetal_cluster.k8s k8s-site1
