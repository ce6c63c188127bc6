"""QoS: tc objects and the kernel capability probe (policies come with the QoS issue)."""
