"""The tenant YAML schema.  Unknown keys are errors (extra="forbid"); models are frozen.

Optional values that netvirt allocates (VNI, MAC, interface name) stay None here; the
loader fills them in deterministically (see netvirt.config.allocate) so that the model that
leaves the loader is complete.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from netvirt.config import units

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
Name = Annotated[str, Field(pattern=NAME_RE)]
# Every pattern is used with fullmatch and spells out ASCII: `$` also matches before a final
# newline, and \d also matches non-ASCII digits.
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def ipv4_syntax(v: str) -> str:
    """An IPv4 address written out (a flag or an API field, not a config value)."""
    try:
        return str(ipaddress.IPv4Address(v))
    except ValueError:
        raise ValueError(f"{v!r} is not an IPv4 address") from None


def mac_syntax(v: str) -> str:
    """A MAC written as six hex pairs, lowercased (any MAC: spoofing tests use others too)."""
    v = v.lower()
    if not _MAC_RE.fullmatch(v):
        raise ValueError("MAC must look like 02:00:00:00:00:01")
    return v


def _mac(v) -> str:
    if not isinstance(v, str):
        # YAML 1.1 reads an unquoted 02:00:00:00:01:01 as a base-60 number
        raise ValueError('quote MAC addresses, e.g. mac: "02:00:00:00:01:01"')
    v = mac_syntax(v)
    if int(v[:2], 16) & 1:
        raise ValueError("MAC must be unicast (lowest bit of the first octet clear)")
    if v == "00:00:00:00:00:00":
        raise ValueError("MAC must not be all zeros")
    return v


def _ifname(v: str) -> str:
    if not _IFNAME_RE.fullmatch(v):
        raise ValueError("interface names are 1-15 characters of letters, digits, '_', '.', '-'")
    return v


def _endpoint(v: str) -> str:
    if v.startswith("ssl:"):
        # refused rather than accepted without a key, certificate and CA to use
        raise ValueError("ssl: OVSDB endpoints are not supported yet; use unix:/PATH (the "
                         "controller on the hypervisor) or tcp:HOST:PORT on a management "
                         "network you trust")
    if v.startswith("unix:/") and v.isprintable():
        return v
    if v.startswith("tcp:"):
        host, _, port = v[4:].rpartition(":")
        if _port_number(port) and _host(host):
            return v
    raise ValueError("endpoint must be unix:/PATH or tcp:HOST:PORT with a port from 1 to "
                     "65535, for example tcp:192.168.0.11:6640")


def _port_number(text: str) -> bool:
    return bool(_PORT_RE.fullmatch(text)) and 0 < int(text) < 65536


def _host(text: str) -> bool:
    """An IPv4 address, an [IPv6] address or a host name."""
    try:
        if text.startswith("[") and text.endswith("]"):
            ipaddress.IPv6Address(text[1:-1])
            return True
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        # all digits and dots is a malformed IPv4 address, not a host name
        return (bool(_HOSTNAME_RE.fullmatch(text)) and len(text) <= 253
                and not text.replace(".", "").isdigit())


def tcp_endpoint(v: str) -> str:
    host, _, port = v.removeprefix("tcp:").rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        ok = v.startswith("tcp:") and _port_number(port)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("must be tcp:IPV4:PORT with a port from 1 to 65535, for example "
                         "tcp:172.30.0.1:6653")
    return v


def hostport(v: str) -> str:
    host, _, port = v.rpartition(":")
    if not _host(host) or not _port_number(port):
        raise ValueError("must be HOST:PORT with a port from 1 to 65535, for example "
                         "127.0.0.1:8181")
    return v


Mac = Annotated[str, BeforeValidator(_mac)]
IfName = Annotated[str, AfterValidator(_ifname)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]


def _written(example: str):
    """Addresses are written as text: pydantic would read YAML's `yes` (True) or `5` as
    0.0.0.1 and 0.0.0.5."""
    def check(v):
        if not isinstance(v, str):
            raise ValueError(f"write an address as text, e.g. {example}")
        return v
    return BeforeValidator(check)


IPv4 = Annotated[ipaddress.IPv4Address, _written("10.0.0.1")]
IPv4Net = Annotated[ipaddress.IPv4Network, _written("10.0.0.0/24")]
IPv4Iface = Annotated[ipaddress.IPv4Interface, _written("192.168.50.1/24")]


Rate = Annotated[int, BeforeValidator(units.rate)]  # bits per second
Size = Annotated[int, BeforeValidator(units.size)]  # bytes
Duration = Annotated[int, BeforeValidator(units.duration)]  # microseconds
Percent = Annotated[float, BeforeValidator(units.percent)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Controller(_Model):
    openflow: Annotated[str, AfterValidator(tcp_endpoint)] = "tcp:127.0.0.1:6653"
    api: Annotated[str, AfterValidator(hostport)] = "127.0.0.1:8181"


class Hypervisor(_Model):
    name: Name
    underlay_ip: IPv4Iface
    ovsdb: Endpoint
    datapath_type: Literal["system", "netdev"] | None = None


class Subnet(_Model):
    cidr: IPv4Net
    gateway: IPv4 | None = None


class FloodLimit(_Model):
    """What one port may flood into its network: broadcast, multicast and unknown unicast,
    in packets per second (an OpenFlow meter per port)."""

    rate: Annotated[int, Field(ge=0, le=1_000_000)] = 1000  # 0: no limit
    burst: Annotated[int, Field(ge=1, le=1_000_000)] = 200


class Network(_Model):
    name: Name
    vni: Annotated[int, Field(ge=1, le=0xFFFFFF)] | None = None
    mtu: Annotated[int, Field(ge=576, le=9000)] = 1450
    subnets: Annotated[list[Subnet], Field(min_length=1)]
    dhcp: bool = False  # answer its ports' DHCP with their configured addresses
    flood_limit: FloodLimit = FloodLimit()
    qos_policy: Name | None = None  # each of its ports', unless a port names its own


class AddressPair(_Model):
    """An extra address a port may send from (VRRP-style failover): its IP, and a MAC
    (default: the port's own)."""

    ip: IPv4
    mac: Mac | None = None


class Port(_Model):
    name: Name
    network: Name
    hypervisor: Name
    ips: Annotated[list[IPv4], Field(min_length=1)]
    mac: Mac | None = None
    interface: IfName | None = None
    # system: a tap/veth that exists on the hypervisor (a guest's); internal: OVS creates it;
    # dummy: a fake port of ovs-vswitchd --enable-dummy, for scale tests without devices
    interface_type: Literal["system", "internal", "dummy"] = "system"
    # absent: the port is not firewalled; [] : only its tenant's firewall defaults apply
    security_groups: list[Name] | None = None
    allowed_address_pairs: list[AddressPair] = []
    # the port's conntrack zone, allocated when absent for a firewalled port (unique among
    # ports and routers: no two share one)
    zone: Annotated[int, Field(ge=1, le=0xFFFF)] | None = None
    qos_policy: Name | None = None  # default: its network's


class RouterInterface(_Model):
    network: Name  # a network of the router's own tenant
    ip: IPv4 | None = None  # default: the gateway of the network's subnet


class Route(_Model):
    destination: IPv4Net
    next_hop: IPv4  # a port's address on one of the router's networks


class ExternalGateway(_Model):
    network: Name  # one of external_networks
    ip: IPv4  # the router's address there: what SNAT translates to
    snat: bool = True


class Router(_Model):
    name: Name
    interfaces: Annotated[list[RouterInterface], Field(min_length=1)]
    routes: list[Route] = []
    external_gateway: ExternalGateway | None = None
    # allocated when absent, like a network's: the router's key on tunnels (its own
    # VNI space is the networks') and its conntrack zone (unique per router)
    vni: Annotated[int, Field(ge=1, le=0xFFFFFF)] | None = None
    zone: Annotated[int, Field(ge=1, le=0xFFFF)] | None = None


class FloatingIP(_Model):
    ip: IPv4  # on the external network of the router that serves the port
    port: Name
    fixed_ip: IPv4 | None = None  # which of the port's addresses; default: its first


def _port_range(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)  # `ports: 80`
    lo, _, hi = v.partition("-") if isinstance(v, str) else ("", "", "")
    if not (_port_number(lo) and (not hi or _port_number(hi))):
        raise ValueError("must be a port (80) or a range (8000-8080) of ports from 1 to 65535")
    return v


PortRange = Annotated[str, BeforeValidator(_port_range)]


class Rule(_Model):
    """One stateful rule: it allows new connections (their replies and related ICMP pass
    too).  ingress: to the port, from the remote side; egress: from the port, to it."""

    direction: Literal["ingress", "egress"]
    protocol: Literal["tcp", "udp", "icmp", "any"] = "any"
    ports: PortRange | None = None  # tcp and udp: the destination port or range
    icmp_type: Annotated[int, Field(ge=0, le=255)] | None = None
    icmp_code: Annotated[int, Field(ge=0, le=255)] | None = None
    remote_cidr: IPv4Net | None = None  # default (and without remote_group): anywhere
    remote_group: Name | None = None  # a security group of the same tenant: its members


class SecurityGroup(_Model):
    name: Name
    rules: list[Rule] = []


class FirewallDefaults(_Model):
    """What a firewalled port's traffic that no rule allows gets."""

    ingress: Literal["allow", "deny"] = "deny"
    egress: Literal["allow", "deny"] = "allow"


class Vip(_Model):
    ip: IPv4  # on the load balancer's network, no port's
    protocol: Literal["tcp", "udp"]
    port: Annotated[int, Field(ge=1, le=65535)]


class Member(_Model):
    port: Name  # a port of the tenant: on the VIP's network, or one its router joins to it
    target_port: Annotated[int, Field(ge=1, le=65535)]
    weight: Annotated[int, Field(ge=0, le=100)] = 1  # 0: takes no new connection


class HealthCheck(_Model):
    """A check of each member's target port, from the VIP, every ``interval`` seconds: a
    TCP connect, or (http) a GET of ``path`` whose status must be one of ``expect``.  A
    member that fails ``fall`` checks in a row leaves the select group, one that passes
    ``rise`` comes back."""

    type: Literal["tcp", "http"] = "tcp"
    # http only: what is asked for, and the answers that pass
    path: Annotated[str, Field(pattern=r"^/[\x21-\x7e]*$", max_length=200)] = "/"
    expect: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] = [200]
    interval: Annotated[float, Field(ge=0.2, le=300)] = 2.0
    timeout: Annotated[float, Field(gt=0, le=60)] = 1.0
    rise: Annotated[int, Field(ge=1, le=10)] = 2
    fall: Annotated[int, Field(ge=1, le=10)] = 2


class LoadBalancer(_Model):
    """A VIP that spreads new connections over its members by an OpenFlow select group
    (a hash of the 5-tuple, with the weights), DNATed through the tenant's conntrack zone
    on the client's hypervisor; with source affinity, a learned flow keeps each client on
    its member."""

    name: Name
    network: Name  # the VIP's network; its members are ports of it
    vip: Vip
    members: Annotated[list[Member], Field(min_length=1)]
    # hash: each new connection by a hash of its 5-tuple; source_ip: a client's new
    # connections go to the member its last one was given, while it opens one at least
    # every affinity_timeout seconds and that member takes connections
    algorithm: Literal["hash", "source_ip"] = "hash"
    affinity_timeout: Annotated[int, Field(ge=1, le=65535)] = 300  # seconds (source_ip)
    health_check: HealthCheck | None = None  # none: every listed member takes connections

    @property
    def affinity(self) -> int | None:
        """Source affinity's idle timeout in seconds; None when each connection is hashed."""
        return self.affinity_timeout if self.algorithm == "source_ip" else None


class QosDirection(_Model):
    """What one direction of a port's traffic gets, seen from the VM.  to_vm: a rate (tc
    htb) and latency, jitter and loss (tc netem) on the hypervisor's side of the VM's
    device; from_vm: a rate (an OpenFlow meter) and a DSCP mark."""

    rate: Rate | None = None
    burst: Size | None = None  # default: to_vm 10 ms of the rate; from_vm 500 ms of it
    latency: Duration | None = None
    jitter: Duration | None = None  # +- around latency
    jitter_correlation: Percent | None = None  # how much each delay depends on the last
    loss: Percent | None = None
    loss_correlation: Percent | None = None
    dscp: Annotated[int, Field(ge=0, le=63)] | None = None  # from_vm: the IPv4 DSCP to set


class QosPolicy(_Model):
    name: Name
    to_vm: QosDirection | None = None
    from_vm: QosDirection | None = None


class Tenant(_Model):
    name: Name
    networks: list[Network] = []
    ports: list[Port] = []
    routers: list[Router] = []
    floating_ips: list[FloatingIP] = []
    security_groups: list[SecurityGroup] = []
    firewall: FirewallDefaults = FirewallDefaults()
    load_balancers: list[LoadBalancer] = []
    qos_policies: list[QosPolicy] = []
    # a policy whose rates the tenant's ports on each hypervisor share (rate and burst
    # only): one OpenFlow meter per hypervisor and direction
    aggregate_qos_policy: Name | None = None
    # the tenant's conntrack zones for its load balancers, allocated when absent and the
    # tenant has one (unique among ports', routers' and tenants'): connections to VIPs are
    # DNATed in `zone`; a member's call to its own VIP is SNATed to the VIP in `hairpin_zone`
    zone: Annotated[int, Field(ge=1, le=0xFFFF)] | None = None
    hairpin_zone: Annotated[int, Field(ge=1, le=0xFFFF)] | None = None


class ExternalNetwork(_Model):
    """A provider network outside the overlay, reached from the gateway hypervisors."""

    name: Name
    cidr: IPv4Net
    gateway: IPv4  # the outside router: the routers' default next hop
    hypervisors: Annotated[list[Name], Field(min_length=1)]  # the gateway hypervisors
    interface: IfName  # each gateway hypervisor's device on it, which netvirt puts on br-int
    vni: Annotated[int, Field(ge=1, le=0xFFFFFF)] | None = None  # its id in the pipeline


class Config(_Model):
    controller: Controller = Controller()
    hypervisors: Annotated[list[Hypervisor], Field(min_length=1)]
    external_networks: list[ExternalNetwork] = []
    tenants: list[Tenant] = []
