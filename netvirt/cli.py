"""The `netvirt` command.  Exit codes: 0 success, 1 error, 2 usage or validation error."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

from netvirt import __version__
from netvirt.apitoken import ensure_token
from netvirt.config import load_file
from netvirt.config.schema import (Controller, hostport, ipv4_syntax, mac_syntax,
                                   tcp_endpoint)
from netvirt.errors import ConfigError, LabError, NetvirtError, UsageError


def main(argv: list[str] | None = None) -> int:
    # python-ovs imports eventlet when it is installed (os-ken pulls it in) and eventlet warns
    # on import; netvirt does not use eventlet.  Eventlet imports dnspython, whose DNSSEC
    # module warns that cryptography deprecates DSA; netvirt does no DNSSEC.
    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    warnings.filterwarnings("ignore", message="DSA is deprecated", module="dns")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("os_ken", "ovsdbapp", "pyroute2"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return args.func(args) or 0
    except ConfigError as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except NetvirtError as e:
        print(f"netvirt: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 1
    except Exception as e:  # a bug: said as one, the traceback only when asked for
        if args.debug:
            raise
        print(f"netvirt: internal error: {type(e).__name__}: {e}; this is a netvirt bug "
              f"(--debug shows the traceback)", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netvirt", description="Multi-tenant network "
                                "virtualization for KVM hypervisors running Open vSwitch.")
    p.add_argument("--debug", action="store_true", help="verbose logs, and a traceback for a bug")
    p.add_argument("--version", action="version", version=f"netvirt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("validate", help="check a tenant file; change nothing")
    c.add_argument("file", help="the tenant YAML")
    c.add_argument("--deep", action="store_true",
                   help="also compile every hypervisor's tables and prove tenants apart")
    c.set_defaults(func=cmd_validate)

    c = sub.add_parser("plan", help="show what applying a file would change; change nothing")
    c.add_argument("file", help="the tenant YAML")
    c.add_argument("-v", "--verbose", action="store_true", help="list every flow")
    c.add_argument("--api", type=_api, help="controller API HOST:PORT (default: the file's "
                   "controller.api)")
    c.set_defaults(func=cmd_plan)

    c = sub.add_parser("apply", help="give a file to the running controller (atomic)")
    c.add_argument("file", help="the tenant YAML")
    c.add_argument("--api", type=_api, help="controller API HOST:PORT (default: the file's "
                   "controller.api)")
    c.add_argument("--no-wait", action="store_true", help="return once accepted")
    c.add_argument("--timeout", type=_positive, default=60.0,
                   help="seconds to wait for sync (default: %(default)s)")
    c.set_defaults(func=cmd_apply)

    c = sub.add_parser("status", help="one line per hypervisor; exit 1 if anything is unhealthy")
    c.add_argument("--api", type=_api, default="127.0.0.1:8181",
                   help="controller API HOST:PORT (default: %(default)s)")
    c.add_argument("--json", action="store_true", help="everything, as JSON")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser("topo", help="the live topology: tree, --json, --dot or --png FILE")
    c.add_argument("--api", type=_api, default="127.0.0.1:8181",
                   help="controller API HOST:PORT (default: %(default)s)")
    fmt = c.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="everything, as JSON")
    fmt.add_argument("--dot", action="store_true", help="Graphviz source")
    fmt.add_argument("--png", metavar="FILE", help="render a picture (needs graphviz)")
    fmt.add_argument("--watch", nargs="?", const=2.0, type=_positive, metavar="SECONDS",
                     help="refresh every SECONDS (default 2) and mark what changed")
    c.set_defaults(func=cmd_topo)

    c = sub.add_parser("trace", help="walk a packet through the pipeline, table by table")
    c.add_argument("--api", type=_api, default="127.0.0.1:8181",
                   help="controller API HOST:PORT (default: %(default)s)")
    c.add_argument("--from", dest="source", required=True, metavar="TENANT/PORT",
                   help="the VM port the packet leaves")
    c.add_argument("--to-ip", required=True, type=_arg(ipv4_syntax), metavar="IP",
                   help="the destination; off its subnets, the packet goes to the gateway")
    proto = c.add_mutually_exclusive_group()
    proto.add_argument("--tcp-dst", type=_l4_port, metavar="PORT", help="a TCP packet to PORT")
    proto.add_argument("--udp-dst", type=_l4_port, metavar="PORT", help="a UDP packet to PORT")
    c.add_argument("--src-ip", type=_arg(ipv4_syntax), help="spoof the source IP")
    c.add_argument("--src-mac", type=_arg(mac_syntax), help="spoof the source MAC")
    c.add_argument("--real", action="store_true",
                   help="also run ofproto/trace on the hypervisors and compare")
    c.add_argument("--json", action="store_true", help="everything, as JSON")
    c.set_defaults(func=cmd_trace)

    c = sub.add_parser("controller", help="run the controller (OpenFlow, OVSDB, API)")
    c.add_argument("file", nargs="?", help="config to start with (default: none; wait for apply)")
    c.add_argument("--openflow", type=_arg(tcp_endpoint),
                   help="listen tcp:IP:PORT (default: the file's controller.openflow)")
    c.add_argument("--api", type=_arg(hostport),
                   help="listen HOST:PORT (default: the file's controller.api)")
    c.add_argument("--audit-interval", type=_positive, default=10.0,
                   help="seconds between re-reads of every switch's flows (default: %(default)s)")
    c.add_argument("--token-file", help="the API token; default: $NETVIRT_API_TOKEN, else "
                   "one kept in /run/netvirt/api-token (root only), which local CLIs read")
    c.add_argument("--no-loopback-token", action="store_true",
                   help="let any local user use a loopback API without a token")
    c.set_defaults(func=cmd_controller)

    c = sub.add_parser("node", help="run the node agent of this hypervisor (kernel report; "
                       "taps and tc later)")
    c.add_argument("--ovsdb", default="unix:/var/run/openvswitch/db.sock",
                   help="this hypervisor's OVSDB (default: %(default)s)")
    c.add_argument("--interval", type=_positive, default=5.0,
                   help="seconds between passes (default: %(default)s)")
    c.add_argument("--vswitchd-ctl", metavar="TARGET",
                   help="ovs-vswitchd's control socket, as ovs-appctl -t takes it (default: "
                        "ovs-vswitchd.ctl beside the OVSDB socket, else ovs-vswitchd)")
    c.add_argument("--once", action="store_true", help="one pass, then exit")
    c.set_defaults(func=cmd_node)

    lab = sub.add_parser("lab", help="emulated hypervisors on this machine").add_subparsers(
        dest="lab_command", required=True, metavar="LAB_COMMAND")
    c = lab.add_parser("up", help="build (or update) the lab for a file")
    c.add_argument("file", help="the tenant YAML whose hypervisors and VM ports to make")
    c.set_defaults(func=cmd_lab_up)
    c = lab.add_parser("down", help="remove everything the lab made")
    c.set_defaults(func=cmd_lab_down)
    c = lab.add_parser("exec", help="run a command in a VM port's namespace")
    c.add_argument("port", metavar="TENANT/PORT", help="the VM port whose namespace to run in")
    c.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD",
                   help="the command to run in the port's namespace")
    c.set_defaults(func=cmd_lab_exec)
    c = lab.add_parser("restart", help="restart one hypervisor's daemons, by recorded PID")
    c.add_argument("hypervisor", help="a hypervisor of the lab, e.g. hv1")
    which = c.add_mutually_exclusive_group()
    which.add_argument("--vswitchd", action="store_const", dest="daemon", const="vswitchd",
                       help="ovs-vswitchd (the default)")
    which.add_argument("--ovsdb", action="store_const", dest="daemon", const="ovsdb",
                       help="ovsdb-server")
    which.add_argument("--node", action="store_const", dest="daemon", const="node",
                       help="its node agent")
    c.set_defaults(func=cmd_lab_restart, daemon="vswitchd")
    c = lab.add_parser("matrix", help="who reaches whom, by ping, in a lab that is up")
    c.add_argument("file", help="the config the lab and the controller hold")
    c.add_argument("--api", type=_api, help="controller API HOST:PORT (default: the file's "
                   "controller.api)")
    c.set_defaults(func=cmd_lab_matrix)
    return p


def _arg(check):
    """An argparse type from a config validator: its message, not argparse's generic one."""
    def convert(value: str):
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = check.__name__
    return convert


def _positive(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0 seconds")
    return seconds


def _l4_port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535)")
    return int(value)


def _api(value: str) -> str:
    """HOST:PORT, also given as http://HOST:PORT[/]."""
    return _arg(hostport)(value.removeprefix("http://").rstrip("/"))


def cmd_validate(args) -> int:
    lc = load_file(args.file)
    cfg = lc.config
    counts = [(len(cfg.hypervisors), "hypervisor"), (len(cfg.tenants), "tenant"),
              (sum(len(t.networks) for t in cfg.tenants), "network"),
              (sum(len(t.ports) for t in cfg.tenants), "port"),
              (sum(len(t.routers) for t in cfg.tenants), "router"),
              (sum(len(t.floating_ips) for t in cfg.tenants), "floating IP"),
              (len(cfg.external_networks), "external network"),
              (sum(len(t.security_groups) for t in cfg.tenants), "security group"),
              (sum(p.security_groups is not None for t in cfg.tenants for p in t.ports),
               "firewalled port"),
              (sum(len(t.load_balancers) for t in cfg.tenants), "load balancer")]
    # the first four always; the rest where the file has any
    shown = counts[:4] + [c for c in counts[4:] if c[0]]
    print(f"{args.file}: valid: " + ", ".join(f"{n} {what}{'' if n == 1 else 's'}"
                                              for n, what in shown))
    if not args.deep:
        return 0
    from netvirt.inspect.proof import IsolationProof
    from netvirt.topology import Topology

    proof = IsolationProof().run(Topology(cfg), {})  # as on switches that have no port yet
    print(proof.explain(lc))
    return 1 if proof.violations else 0


def _client(args, lc=None):
    from netvirt.client import Client

    return Client(getattr(args, "api", None) or
                  (lc.config.controller.api if lc else "127.0.0.1:8181"))


def cmd_plan(args) -> int:
    lc = load_file(args.file)
    result = _client(args, lc).plan(lc)
    total = 0
    for hv, p in result["hypervisors"].items():
        changes = sum(a + d for a, d in p["per_table"].values()) + p["add_groups"] + p["delete_groups"]
        total += changes
        print(f"{hv}: {'no change' if not changes else f'{changes} change(s)'}")
        for table, (adds, dels) in p["per_table"].items():
            print(f"  {table:<14} +{adds} -{dels}")
        if p["add_groups"] or p["delete_groups"]:
            print(f"  {'groups':<14} +{p['add_groups']} -{p['delete_groups']}")
        if args.verbose:
            for line in p["lines"]:
                print(f"    {line}")
    print(f"{total} change(s) in total; nothing was applied")
    print(result["isolation"]["text"])
    return 0 if result["isolation"]["proven"] else 1


def cmd_apply(args) -> int:
    lc = load_file(args.file)
    client = _client(args, lc)
    t0 = time.monotonic()
    r = client.apply(lc)
    print(f"revision {r['revision']} accepted ({lc.filename}, {r['digest']})")
    if args.no_wait:
        return 0
    client.timeout = args.timeout + 10
    st = client.wait_in_sync(r["revision"], args.timeout)
    if st["revision"] >= r["revision"] and st["in_sync"]:
        print(f"converged in {time.monotonic() - t0:.2f}s on {len(st['hypervisors'])} "
              f"hypervisor(s)")
        for g in st.get("qos_not_enforced", ()):
            print(f"warning: qos: {g['port']} on {g['hypervisor']}: {', '.join(g['parts'])} "
                  f"not enforced ({g['why']})", file=sys.stderr)
        return 0
    _print_status(st)
    print(f"netvirt: error: not in sync after {args.timeout}s; see the lines above and the "
          f"controller log", file=sys.stderr)
    return 1


def _print_status(st: dict) -> bool:
    for name, h in st["hypervisors"].items():
        switch = ("down" if not h["switch_connected"] else
                  "up" if h["switch_verified"] else "up(unverified)")
        print(f"{name:<12} {'ok  ' if h['healthy'] else 'FAIL'} switch={switch} "
              f"ovsdb={'up' if h['ovsdb_connected'] else 'down'} node={h.get('node') or 'none'} "
              f"flows={h['installed_flows']}/"
              f"{h['desired_flows']} rev={h['applied_revision']} "
              f"{('error: ' + h['last_error']) if h['last_error'] else ''}"
              f"{(' ovsdb error: ' + h['ovsdb_error']) if h.get('ovsdb_error') else ''}"
              f"{(' ports down: ' + ', '.join(h['ports_down'])) if h['ports_down'] else ''}"
              f"{(' ports: ' + str(h['port_errors'])) if h['port_errors'] else ''}".rstrip())
        for host, r in h["refused"].items():
            print(f"{'':<12} refused {r['count']} connection(s) from {host}, the last at "
                  f"{r['last']}: {r['why']}")
    for g in st.get("qos_not_enforced", ()):
        print(f"qos: {g['port']} on {g['hypervisor']}: {', '.join(g['parts'])} not enforced "
              f"({g['why']})")
    for m in st.get("load_balancer_members_down", ()):
        print(f"load balancer member {m['member']} is down since {m['since']}: its health "
              f"checks fail (the last: {m['last_check']}), it takes no new connection")
    if st["config"] is None:
        print(f"revision {st['revision']}: no config applied yet; apply one with "
              f"`netvirt apply FILE`")
    else:
        print(f"revision {st['revision']}: {'healthy' if st['healthy'] else 'UNHEALTHY'}")
    return st["healthy"]


def cmd_status(args) -> int:
    st = _client(args).status()
    if args.json:
        print(json.dumps(st, indent=1))
        return 0 if st["healthy"] else 1
    return 0 if _print_status(st) else 1


def cmd_controller(args) -> int:
    from netvirt.controller.api import is_loopback
    from netvirt.controller.service import run

    lc = load_file(args.file) if args.file else None
    ctl = lc.config.controller if lc else Controller()
    if args.openflow:
        ctl = Controller(openflow=args.openflow, api=ctl.api)
    token = os.environ.get("NETVIRT_API_TOKEN")
    if args.token_file:
        try:
            token = open(args.token_file).read().strip()
        except OSError as e:
            raise UsageError(f"cannot read --token-file {args.token_file}: {e.strerror}") from None
    api = args.api or ctl.api
    if not token and not args.no_loopback_token and is_loopback(api.rsplit(":", 1)[0]):
        # off loopback the API refuses to start without a token given on purpose: one
        # kept on this host only would let no remote client in anyway
        token = ensure_token()
    return run(lc, ctl.openflow, api, args.audit_interval, token)


def cmd_node(args) -> int:
    from netvirt.drivers.ovsdb import OvsdbDriver
    from netvirt.host.node import NodeAgent

    from netvirt.host.tunnel_neighbours import TunnelNeighbours, vswitchd_ctl
    from netvirt.pipeline.layout import PHY_BRIDGE

    neighbours = TunnelNeighbours(args.vswitchd_ctl or vswitchd_ctl(args.ovsdb), PHY_BRIDGE)
    agent = NodeAgent(OvsdbDriver(args.ovsdb), args.interval, neighbours=neighbours)
    if args.once:
        n = agent.reconcile_once()
        print(f"node: {n} change(s) to {args.ovsdb}")
        agent.ovsdb.close()
        return 0
    return agent.run()


def cmd_topo(args) -> int:
    from netvirt.topology import render

    client = _client(args)
    if args.watch:
        return _watch(client, args.watch)
    t = client.topology()
    if args.json:
        print(json.dumps(t, indent=1))
    elif args.dot:
        print(render.dot(t), end="")
    elif args.png:
        render.png(t, args.png)
        g = render.graph(t)
        print(f"wrote {args.png}: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges")
    else:
        print("\n".join(render.tree(t)))
    return 0


def _watch(client, interval: float) -> int:
    from netvirt.topology import render

    before: list[str] = []
    while True:
        now = render.tree(client.topology())
        marked = [("* " if before and line not in before else "  ") + line for line in now]
        print("\033[2J\033[H" + time.strftime("%H:%M:%S") + f"  every {interval}s; * = changed\n"
              + "\n".join(marked), flush=True)
        before = now
        time.sleep(interval)


def cmd_trace(args) -> int:
    req = {"from": args.source, "to_ip": args.to_ip, "real": args.real,
           "src_ip": args.src_ip, "src_mac": args.src_mac}
    if args.tcp_dst is not None:
        req.update(proto="tcp", dst_port=args.tcp_dst)
    elif args.udp_dst is not None:
        req.update(proto="udp", dst_port=args.udp_dst)
    r = _client(args).trace(req)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    for stage, title in (("arp", f"ARP who-has {args.to_ip}"), ("packet", "packet")):
        if stage not in r:
            continue
        print(f"== {title}")
        for s in r[stage]["steps"]:
            where = f"  ({s['defined_at']})" if s["defined_at"] else ""
            flow = s['flow'].split('  [')[0].removeprefix(s['table']).strip()
            print(f"  {s['hypervisor']:<6} {s['table']:<14} {flow}")
            ct = f"  conntrack: {s['ct_state']}" if s.get("ct_state") else ""
            print(f"  {'':<6} {'':<14} from {s['origin'] or '-'}{where}{ct}")
            if s.get("choices"):
                picks = ", ".join(f"{c['to']} (weight {c['weight']}"
                                  + (f", {c['health']}" if c.get("health") else "") + ")"
                                  for c in s["choices"] if c.get("health") != "down")
                down = [c["to"] for c in s["choices"] if c.get("health") == "down"]
                if down:
                    picks += f"; not {', '.join(down)} (its health checks fail)"
                followed = next(c["to"] for c in s["choices"] if c["followed"])
                decides = "a connection's 5-tuple hash decides"
                if s.get("affinity_timeout"):
                    decides = ("a client with no member learned in the last "
                               f"{s['affinity_timeout']}s gets one by its 5-tuple hash")
                print(f"  {'':<6} {'':<14} picks one of: {picks}; {decides}, this trace "
                      f"follows {followed}")
            if s.get("action") == "return":
                print(f"  {'':<6} {'':<14} the model learns no flows: the switch may have "
                      f"learned one here (--real shows it)")
        for rep in r[stage].get("real", []):
            verdict = "agrees" if rep.get("agree") else ("DISAGREES" if "real" in rep else "not run")
            print(f"  ofproto/trace on {rep['hypervisor']}: {verdict}"
                  + (f" ({rep['note']})" if "note" in rep else ""))
            if "error" in rep:
                print(f"    {rep['error']}")
            elif "warning" in rep:
                print(f"    {rep['warning']}")
                print(f"    datapath actions: {rep['datapath_actions']}")
            elif not rep["agree"]:
                print("    model: " + " | ".join(rep["model"]))
                print("    real:  " + " | ".join(rep["real"]))
            else:
                print(f"    datapath actions: {rep['datapath_actions']}")
    print(f"verdict: {r['verdict']}")
    if args.real and not r.get("agree", False):
        print("the model and the switches disagree: see above", file=sys.stderr)
        return 1
    return 0


def cmd_lab_up(args) -> int:
    from netvirt.host.lab import Lab

    lc = load_file(args.file)
    t0 = time.monotonic()
    Lab().up(lc)
    print(f"lab up for {args.file} in {time.monotonic() - t0:.2f}s: "
          f"{len(lc.config.hypervisors)} hypervisors, "
          f"{sum(len(t.ports) for t in lc.config.tenants)} VM ports")
    return 0


def cmd_lab_down(args) -> int:
    from netvirt.host.lab import Lab

    removed = Lab().down()
    print(f"lab down: removed {len(removed)} object(s)" if removed else "no lab is up")
    return 0


def cmd_lab_exec(args) -> int:
    from netvirt.host.lab import Lab

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("netvirt lab exec: give a command after --", file=sys.stderr)
        return 2
    full = Lab().exec_argv(args.port, argv)
    os.execvp(full[0], full)


def _lab_that_is_up():
    from netvirt.host.lab import Lab

    lab = Lab()
    if not lab.is_up:
        raise LabError("no lab is up; run `netvirt lab up FILE` first")
    return lab


def cmd_lab_restart(args) -> int:
    lab = _lab_that_is_up()
    lab.ovs(args.hypervisor)  # a usage error for a hypervisor the lab does not have
    t0 = time.monotonic()
    if args.daemon == "node":
        lab.restart_node(args.hypervisor)
    else:
        getattr(lab, f"stop_{args.daemon}")(args.hypervisor)
        getattr(lab, f"start_{args.daemon}")(args.hypervisor)
    print(f"{args.hypervisor}: {args.daemon} restarted in {time.monotonic() - t0:.2f}s")
    return 0


def cmd_lab_matrix(args) -> int:
    from netvirt.host.reach import matrix, render_matrix

    lc = load_file(args.file)
    lab = _lab_that_is_up()
    lab.check_built_from(lc)
    try:
        held = _client(args, lc).status().get("config") or {}
    except NetvirtError as e:
        print(f"netvirt: note: cannot ask the controller which config it holds: {e}",
              file=sys.stderr)
    else:
        if held.get("digest") != lc.revision:
            raise UsageError(f"the controller holds {held.get('file') or 'no config'} "
                             f"({held.get('digest')}), not {lc.filename} ({lc.revision}); run "
                             f"`netvirt apply {lc.filename}` first")
    m = matrix(lab, lc.config)
    print(render_matrix(m))
    return 0 if m.as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
