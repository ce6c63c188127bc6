"""The OpenFlow driver's batching: every message leaves with its own xid, and a switch error
for one of them fails the batch naming it.  A recording datapath stands in for the socket;
the driver, the codec and os-ken's message classes are real."""
import struct
import threading
from types import SimpleNamespace

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from netvirt.config import load_file
from netvirt.drivers.ofswitch import OFSwitch
from netvirt.errors import SwitchError
from netvirt.reconcile.compiler import compile_flows
from netvirt.reconcile.diff import plan
from netvirt.topology import Topology

from .helpers import DEMO_FLOWS, ROOT_EXAMPLES, sequential_inventory


class RecordingDatapath:
    """Answers barriers itself; ``reject`` = index of a flow mod the switch refuses."""

    ofproto, ofproto_parser, id, address = ofp, parser, 1, ("192.0.2.1", 40000)

    def __init__(self, reject: int | None = None):
        self.xid, self.sent, self.reject, self.switch = 0, [], reject, None

    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)

    def send_msg(self, msg):  # barriers and requests
        msg.serialize()
        self._answer(bytes(msg.buf))

    def send(self, buf):
        self._answer(bytes(buf))
        return True

    def _answer(self, buf):
        while buf:
            _, kind, length, xid = struct.unpack_from("!BBHI", buf)
            self.sent.append((kind, xid))
            if kind == ofp.OFPT_FLOW_MOD:
                mods = [x for k, x in self.sent if k == ofp.OFPT_FLOW_MOD]
                if len(mods) - 1 == self.reject:
                    err = SimpleNamespace(xid=xid, type=ofp.OFPET_BAD_MATCH, code=3)
                    self.switch.deliver_error(err)
            if kind == ofp.OFPT_BARRIER_REQUEST:
                reply = SimpleNamespace(xid=xid)
                threading.Thread(target=self.switch.deliver, args=(reply,)).start()
            buf = buf[length:]


def _plan():
    topo = Topology(load_file(ROOT_EXAMPLES / "demo.yaml").config)
    return plan(compile_flows(topo, "hv1", sequential_inventory(topo)["hv1"]), {}, set())


def test_every_message_gets_its_own_xid():
    dp = RecordingDatapath()
    sw = dp.switch = OFSwitch(dp, timeout=2)
    p = _plan()
    sw.apply(p)
    mods = [x for k, x in dp.sent if k == ofp.OFPT_FLOW_MOD]
    assert len(mods) == len(p.add_flows) == DEMO_FLOWS and len(set(mods)) == DEMO_FLOWS
    assert len({x for _, x in dp.sent}) == len(dp.sent)
    sw.apply(p)  # encoded again from the cache: still fresh xids
    assert len({x for _, x in dp.sent}) == len(dp.sent)


def test_a_rejected_flow_mod_fails_the_batch():
    dp = RecordingDatapath(reject=7)
    sw = dp.switch = OFSwitch(dp, timeout=2)
    with pytest.raises(SwitchError, match="1 message\\(s\\) rejected, first: OpenFlow error "
                                          "OFPET_BAD_MATCH/OFPBMC_BAD_DL_ADDR_MASK \\(type=4 code=3\\)"):
        sw.apply(_plan())
