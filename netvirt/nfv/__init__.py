"""Network functions compiled into the pipeline: the router, firewall and load balancer
(their stages and packet services) come here, one module per function."""
