"""netvirt: a multi-tenant network virtualization controller for KVM hypervisors running OVS."""

__version__ = "0.2.0"
