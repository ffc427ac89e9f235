//! The rules engine applied to frames: adapts our config and the remote member's credentials
//! to the rules VM in `weft_wire::rules`, then sends the TEE/WATCH copies and REDIRECTs it asks
//! for. spec: vl2.md §15.6

use std::net::IpAddr;

use rand_core::RngCore;
use weft_wire::mac::Mac;
use weft_wire::netconf::NetworkConfig;
use weft_wire::packet::Verb;
use weft_wire::rules::Rule;
use weft_wire::rules::eval::{self, FrameInfo};
use weft_wire::rules::filter::{self, Decision, FilterVerdict, FrameCheck, OwnView};
use weft_wire::{Address, NetworkId};

use super::Node;
use super::vl2_frames::{Eth, encode_ext_frame};
use crate::Timestamp;
use crate::network::membership::Membership;

/// The remote member as the VM sees it (valid credentials only).
struct Remote<'a> {
    m: &'a Membership,
    ours: &'a NetworkConfig,
}

impl eval::Membership for Remote<'_> {
    fn tag(&self, id: u32) -> Option<u32> {
        self.m.tag(id, self.ours)
    }
    fn owns_ip(&self, ip: IpAddr) -> bool {
        self.m.owns_ip(ip, self.ours)
    }
    fn owns_mac(&self, mac: Mac) -> bool {
        self.m.owns_mac(mac, self.ours)
    }
}

/// Which evaluation: the remote member (the destination outbound, the sender inbound), the
/// direction, and whether TEE copies may be sent.
#[derive(Debug, Clone, Copy)]
struct Which {
    remote: Address,
    inbound: bool,
    tee_allowed: bool,
}

impl Node {
    fn evaluate(
        &mut self,
        nwid: NetworkId,
        c: &NetworkConfig,
        eth: &Eth<'_>,
        w: Which,
    ) -> FilterVerdict {
        let Which {
            remote,
            inbound,
            tee_allowed,
        } = w;
        let random = self.rng.next_u32();
        let me = self.address();
        let empty = Membership::new();
        let m = self
            .networks
            .get(&nwid)
            .and_then(|n| n.members.get(&remote))
            .unwrap_or(&empty);
        let rv = Remote { m, ours: c };
        let caps: Vec<(u32, &[Rule])> = if inbound {
            m.capabilities(c).map(|k| (k.id(), k.rules())).collect()
        } else {
            Vec::new()
        };
        filter::check_frame(FrameCheck {
            own: OwnView {
                me,
                network_id: nwid,
                config: c,
            },
            remote,
            membership: (remote != Address::default()).then_some(&rv as &dyn eval::Membership),
            sender_capabilities: &caps,
            frame: FrameInfo::from_parts(eth.dst, eth.src, eth.ethertype, eth.payload),
            inbound,
            tee_allowed,
            random,
        })
    }

    /// Sends the copies and the redirect a verdict asks for.
    fn act_on(&mut self, now: Timestamp, nwid: NetworkId, v: &FilterVerdict, eth: &Eth<'_>) {
        for copy in v.copies() {
            let len = copy.length.min(eth.payload.len());
            let part = Eth {
                payload: &eth.payload[..len],
                ..*eth
            };
            let mut p = Vec::with_capacity(24 + len);
            encode_ext_frame(&mut p, nwid, copy.flags, part);
            self.send(now, copy.address, Verb::EXT_FRAME, &p);
        }
        if let Some(r) = v.redirect {
            let mut p = Vec::with_capacity(24 + eth.payload.len());
            encode_ext_frame(&mut p, nwid, r.flags, *eth);
            self.send(now, r.address, Verb::EXT_FRAME, &p);
        }
    }

    /// Outbound filter (ztSource = us). `true` if the original frame may be sent to `dest`
    /// (zero for multicast and the first pass of bridged sends). spec: vl2.md §15.6
    pub(crate) fn filter_outbound(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        c: &NetworkConfig,
        dest: Address,
        eth: &Eth<'_>,
        tee_allowed: bool,
    ) -> bool {
        let w = Which {
            remote: dest,
            inbound: false,
            tee_allowed,
        };
        let v = self.evaluate(nwid, c, eth, w);
        let accepted = v.decision != Decision::Drop;
        if let Some(n) = self.networks.get_mut(&nwid) {
            if accepted {
                n.filter.tx_accepted += 1;
            } else {
                n.filter.tx_rejected += 1;
            }
        }
        if !accepted {
            return false;
        }
        self.act_on(now, nwid, &v, eth);
        v.redirect.is_none()
    }

    /// Inbound filter (ztSource = sender, ztDest = us): 0 drop, 1 accept, 2 super-accept.
    /// spec: vl2.md §15.6
    pub(crate) fn filter_inbound(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        c: &NetworkConfig,
        sender: Address,
        eth: &Eth<'_>,
    ) -> u8 {
        let w = Which {
            remote: sender,
            inbound: true,
            tee_allowed: true,
        };
        let v = self.evaluate(nwid, c, eth, w);
        if let Some(n) = self.networks.get_mut(&nwid) {
            if v.decision == Decision::Drop {
                n.filter.rx_rejected += 1;
            } else {
                n.filter.rx_accepted += 1;
            }
        }
        self.act_on(now, nwid, &v, eth);
        match v.decision {
            Decision::Drop => 0,
            Decision::Accept => 1,
            Decision::SuperAccept => 2,
        }
    }
}
