"""The os-ken application: glue between os-ken events and the controller service.

Handlers only forward: switch up/down, replies, port changes and flow removals go to the
service, which marks state dirty; the agents send every flow.  Packet-ins go to the
service's packet-in path (controller/packet_in.py), which limits and queues them.
"""
from __future__ import annotations

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import controller, ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls

from netvirt.drivers import ofcodec


def _end_connection_when_switch_hangs_up() -> None:
    """os-ken 4.2.2 on native threads: hub.kill() is a no-op, so when a switch hangs up,
    Datapath.serve() waits forever for its send thread (blocked on an empty queue) and the
    DEAD_DISPATCHER event never fires: a dead switch would look connected.  After the receive
    loop ends we close the datapath (which emits the event) and wake the send loop."""
    recv_loop = controller.Datapath._recv_loop
    if getattr(recv_loop, "netvirt_patched", False):
        return

    def _recv_loop(self):
        try:
            recv_loop(self)
        finally:
            self.close()
            self.send(b"", close_socket=True)

    _recv_loop.netvirt_patched = True
    controller.Datapath._recv_loop = _recv_loop


_end_connection_when_switch_hangs_up()


class NetvirtOFApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofcodec.OFP_VERSION]
    service = None  # set by ControllerService before os-ken instantiates the app

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev):
        if ev.state == MAIN_DISPATCHER:
            self.service.switch_connected(ev.datapath)
        else:
            self.service.switch_disconnected(ev.datapath)

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPGroupDescStatsReply,
                 ofp_event.EventOFPPortDescStatsReply, ofp_event.EventOFPPortStatsReply,
                 ofp_event.EventOFPMeterConfigStatsReply, ofp_event.EventOFPMeterStatsReply],
                MAIN_DISPATCHER)
    def _multipart_reply(self, ev):
        self.service.reply(ev.msg, last=not ofcodec.is_multipart_more(ev.msg))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev):
        self.service.reply(ev.msg, last=True)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev):
        self.service.error(ev.msg)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        self.service.port_status(ev.msg)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev):
        self.service.flow_removed(ev.msg)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        # rate-limited and queued by the service, never handled on this thread: it also
        # carries every reply the agents wait for
        self.service.packet_in(ev.msg)


def start(service, host: str, port: int) -> None:
    """Start os-ken's OpenFlow listener with this app; events go to ``service``.  (os-ken
    4.2.2 runs on native threads and has no osken-manager: its AppManager is driven here.)"""
    NetvirtOFApp.service = service
    cfg.CONF(args=["--ofp-listen-host", host, "--ofp-tcp-listen-port", str(port)],
             project="os_ken")
    mgr = app_manager.AppManager.get_instance()
    mgr.load_apps(["os_ken.controller.ofp_handler", __name__])
    mgr.instantiate_apps(**mgr.create_contexts())
