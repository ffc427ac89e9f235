//! Prometheus metrics: a snapshot of the node, the data plane and the networks, rendered with
//! `prometheus-client` (OpenMetrics text). Names follow Prometheus conventions (`_total` for
//! counters, `_bytes`, `_seconds`); cardinality is bounded: per-network series only for joined
//! networks, per-peer series only when `settings.metricsPerPeer` is true. Served at `/metrics`
//! (auth or metrics token) and written to `<home>/metrics.prom`. spec: service.md §7 (families
//! there are ZeroTier's; weft's names are listed in README/ARCHITECTURE)

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use weft_engine::EngineStats;
use weft_proto::{NetworkInfo, NodeStats, PeerInfo, PeerRole, Timestamp};

/// Everything one scrape reports.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) node: NodeStats,
    pub(crate) engine: EngineStats,
    /// The data plane's UDP back-end (its name, the first word of its description).
    pub(crate) backend: String,
    pub(crate) networks: Vec<NetworkInfo>,
    pub(crate) peers: Vec<PeerInfo>,
    pub(crate) online: bool,
    pub(crate) tap_drops: u64,
    pub(crate) per_peer: bool,
    pub(crate) now: Timestamp,
}

/// Names of verbs by number, as `packet_type` label values (ZeroTier's names).
const VERBS: [(usize, &str); 21] = [
    (0x00, "nop"),
    (0x01, "hello"),
    (0x02, "error"),
    (0x03, "ok"),
    (0x04, "whois"),
    (0x05, "rendezvous"),
    (0x06, "frame"),
    (0x07, "ext_frame"),
    (0x08, "echo"),
    (0x09, "multicast_like"),
    (0x0a, "network_credentials"),
    (0x0b, "network_config_request"),
    (0x0c, "network_config"),
    (0x0d, "multicast_gather"),
    (0x0e, "multicast_frame"),
    (0x10, "push_direct_paths"),
    (0x11, "ack"),
    (0x12, "qos"),
    (0x14, "user_message"),
    (0x15, "remote_trace"),
    (0x16, "path_negotiation_request"),
];

/// Error codes by number, as `error_type` label values.
const ERRORS: [(usize, &str); 8] = [
    (0x01, "invalid_request"),
    (0x02, "bad_protocol_version"),
    (0x03, "obj_not_found"),
    (0x04, "identity_collision"),
    (0x05, "unsupported_operation"),
    (0x06, "need_membership_certificate"),
    (0x07, "network_access_denied"),
    (0x09, "authentication_required"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PacketLabels {
    direction: &'static str,
    packet_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    direction: &'static str,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetLabels {
    network_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetFilterLabels {
    accepted: &'static str,
    direction: &'static str,
    network_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Role {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verdict {
    backend: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    node_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerPathLabels {
    node_id: String,
    status: &'static str,
}

fn counter_family<L>(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Counter>::default();
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, f.clone()),
        None => reg.register(name, help, f.clone()),
    }
    f
}

fn gauge_family<L>(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Gauge>::default();
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, f.clone()),
        None => reg.register(name, help, f.clone()),
    }
    f
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Renders a snapshot as OpenMetrics text.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut reg = Registry::default();

    let packets: Family<PacketLabels, Counter> = counter_family(
        &mut reg,
        "weft_packets",
        "Authenticated VL1 packets by verb",
        None,
    );
    for (n, name) in VERBS {
        for (direction, v) in [("rx", s.node.packets_in[n]), ("tx", s.node.packets_out[n])] {
            packets
                .get_or_create(&PacketLabels {
                    direction,
                    packet_type: name,
                })
                .inc_by(v);
        }
    }
    let errors: Family<ErrorLabels, Counter> = counter_family(
        &mut reg,
        "weft_packet_errors",
        "ERROR packets by code",
        None,
    );
    for (n, name) in ERRORS {
        for (direction, v) in [("rx", s.node.errors_in[n]), ("tx", s.node.errors_out[n])] {
            errors
                .get_or_create(&ErrorLabels {
                    direction,
                    error_type: name,
                })
                .inc_by(v);
        }
    }
    let data: Family<Direction, Counter> = counter_family(
        &mut reg,
        "weft_udp",
        "UDP payload bytes handled by the protocol core",
        Some(Unit::Bytes),
    );
    data.get_or_create(&Direction { direction: "rx" })
        .inc_by(s.node.bytes_in);
    data.get_or_create(&Direction { direction: "tx" })
        .inc_by(s.node.bytes_out);
    let datagrams: Family<Direction, Counter> = counter_family(
        &mut reg,
        "weft_datagrams",
        "Datagrams handled by the protocol core",
        None,
    );
    datagrams
        .get_or_create(&Direction { direction: "rx" })
        .inc_by(s.node.datagrams_in);
    datagrams
        .get_or_create(&Direction { direction: "tx" })
        .inc_by(s.node.datagrams_out);
    let drops: Family<Reason, Counter> = counter_family(
        &mut reg,
        "weft_drops",
        "Packets and frames dropped, by reason",
        None,
    );
    for (reason, v) in [
        ("mac_failure", s.node.mac_failures),
        ("duplicate", s.node.duplicates),
        ("malformed", s.node.malformed),
        ("rate_limited", s.node.rate_limited),
        ("queue", s.node.queue_drops),
        ("frame_filtered", s.node.frames_dropped),
        ("tap_write", s.tap_drops),
    ] {
        drops.get_or_create(&Reason { reason }).inc_by(v);
    }
    let frames: Family<Direction, Counter> = counter_family(
        &mut reg,
        "weft_frames",
        "Ethernet frames to and from local ports",
        None,
    );
    frames
        .get_or_create(&Direction { direction: "rx" })
        .inc_by(s.node.frames_in + s.engine.frames_in);
    frames
        .get_or_create(&Direction { direction: "tx" })
        .inc_by(s.node.frames_out + s.engine.frames_out);
    let dp: Family<Verdict, Counter> = counter_family(
        &mut reg,
        "weft_dataplane_datagrams",
        "Datagrams seen by the data plane, by back-end and verdict",
        None,
    );
    for (verdict, v) in [
        ("relayed", s.engine.relayed),
        ("up", s.engine.up),
        ("dropped", s.engine.dropped),
        ("frame_in", s.engine.frames_in),
        ("frame_out", s.engine.frames_out),
        ("frame_up", s.engine.frames_up),
        ("frame_filtered", s.engine.filtered),
    ] {
        dp.get_or_create(&Verdict {
            backend: s.backend.clone(),
            verdict,
        })
        .inc_by(v);
    }
    let online: Family<Vec<(String, String)>, Gauge> = gauge_family(
        &mut reg,
        "weft_online",
        "1 if an upstream was heard from recently",
        None,
    );
    online.get_or_create(&Vec::new()).set(i64::from(s.online));
    let nets: Family<Vec<(String, String)>, Gauge> =
        gauge_family(&mut reg, "weft_networks", "Joined networks", None);
    nets.get_or_create(&Vec::new())
        .set(gauge_value(s.networks.len() as u64));
    let groups: Family<NetLabels, Gauge> = gauge_family(
        &mut reg,
        "weft_network_multicast_groups",
        "Multicast groups announced on a network",
        None,
    );
    let filtered: Family<NetFilterLabels, Counter> = counter_family(
        &mut reg,
        "weft_network_frames",
        "Frames through the rules engine, by outcome",
        None,
    );
    for n in &s.networks {
        let network_id = format!("{:016x}", n.network_id.0);
        groups
            .get_or_create(&NetLabels {
                network_id: network_id.clone(),
            })
            .set(gauge_value(n.multicast_subscriptions.len() as u64));
        for (direction, accepted, v) in [
            ("rx", "yes", n.filter.rx_accepted),
            ("rx", "no", n.filter.rx_rejected),
            ("tx", "yes", n.filter.tx_accepted),
            ("tx", "no", n.filter.tx_rejected),
        ] {
            filtered
                .get_or_create(&NetFilterLabels {
                    accepted,
                    direction,
                    network_id: network_id.clone(),
                })
                .inc_by(v);
        }
    }
    let peers: Family<Role, Gauge> =
        gauge_family(&mut reg, "weft_peers", "Known peers by role", None);
    for role in ["leaf", "moon", "planet"] {
        peers.get_or_create(&Role { role }).set(0);
    }
    for p in &s.peers {
        let role = match p.role {
            PeerRole::Planet => "planet",
            PeerRole::Moon => "moon",
            _ => "leaf",
        };
        peers.get_or_create(&Role { role }).inc();
    }
    if s.per_peer {
        let latency: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>> = {
            let f = Family::default();
            reg.register_with_unit(
                "weft_peer_latency",
                "Latency of the preferred path",
                Unit::Seconds,
                f.clone(),
            );
            f
        };
        let paths: Family<PeerPathLabels, Gauge> =
            gauge_family(&mut reg, "weft_peer_paths", "Direct paths by state", None);
        for p in &s.peers {
            let node_id = p.address.to_string();
            if let Some(ms) = p.paths.iter().find(|x| x.preferred).and_then(|x| x.latency) {
                latency
                    .get_or_create(&PeerLabels {
                        node_id: node_id.clone(),
                    })
                    .set(f64::from(ms) / 1000.0);
            }
            let alive = p.paths.iter().filter(|x| x.alive).count() as u64;
            let dead = p.paths.len() as u64 - alive;
            for (status, v) in [("alive", alive), ("dead", dead)] {
                paths
                    .get_or_create(&PeerPathLabels {
                        node_id: node_id.clone(),
                        status,
                    })
                    .set(gauge_value(v));
            }
        }
    }
    let _ = s.now;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut node = NodeStats::default();
        node.packets_in[0x06] = 7;
        node.packets_out[0x01] = 3;
        node.errors_in[0x07] = 2;
        node.bytes_in = 1500;
        node.frames_dropped = 4;
        Snapshot {
            node,
            engine: EngineStats {
                relayed: 5,
                up: 9,
                dropped: 1,
                frames_out: 11,
                ..Default::default()
            },
            backend: "mmsg".into(),
            networks: Vec::new(),
            peers: Vec::new(),
            online: true,
            tap_drops: 0,
            per_peer: false,
            now: 0,
        }
    }

    #[test]
    fn conventional_names_and_values() {
        let text = render(&snapshot());
        for line in [
            "weft_packets_total{direction=\"rx\",packet_type=\"frame\"} 7",
            "weft_packets_total{direction=\"tx\",packet_type=\"hello\"} 3",
            "weft_packet_errors_total{direction=\"rx\",error_type=\"network_access_denied\"} 2",
            "weft_udp_bytes_total{direction=\"rx\"} 1500",
            "weft_drops_total{reason=\"frame_filtered\"} 4",
            "weft_dataplane_datagrams_total{backend=\"mmsg\",verdict=\"relayed\"} 5",
            "weft_dataplane_datagrams_total{backend=\"mmsg\",verdict=\"frame_out\"} 11",
            // prometheus-client writes unlabeled samples with empty braces (valid OpenMetrics)
            "weft_online{} 1",
            "weft_networks{} 0",
            "# TYPE weft_udp_bytes counter",
            "# UNIT weft_udp_bytes bytes",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"));
        // every verb and error family exists from the start (zero values), both directions
        assert_eq!(text.matches("weft_packets_total{").count(), 2 * VERBS.len());
        assert_eq!(
            text.matches("weft_packet_errors_total{").count(),
            2 * ERRORS.len()
        );
        assert!(
            !text.contains("weft_peer_latency"),
            "per-peer series are opt-in"
        );
    }
}
