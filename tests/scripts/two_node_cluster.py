"""A Ray cluster of two nodes of one CPU each on this machine (`ray.cluster_utils.Cluster`),
run in a process of its own: prints its address, runs until its stdin closes, then removes
its nodes. Cluster's shutdown resets Ray's state in the process that made it, so the test
process, which may hold a Ray of its own (tests/conftest.py `local_ray`), makes it here."""

import sys

from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
