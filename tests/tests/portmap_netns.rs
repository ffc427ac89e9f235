//! Port mapping against a real gateway: Debian's `miniupnpd` (nftables build) runs in a NAT
//! router namespace, and `weft daemon` nodes behind it map their tertiary port through UPnP IGD
//! or PCP/NAT-PMP, report it in `/status` (`portMapping`), advertise it to trusted peers, and
//! remove it when they stop. spec: vl1.md §0.1, §5.8, §8.12; service.md §3.1
//!
//! Needs root, iproute2, iptables, nftables and miniupnpd (`scripts/install-test-deps.sh`); fails
//! loudly without them unless `WEFT_SKIP_NETNS=1` is set. Logs and homes are kept when a test
//! fails.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_conformance::netns::{Lab, Lan, NatKind, NatRouter, Proc};
use weft_conformance::weftnode::{WeftNode, paths, peer, preferred_path, private_planet};

/// The "internet" segment. miniupnpd refuses to forward when its outside address is private or
/// reserved (RFC 1918, TEST-NETs, 198.18/15, …), so this is an ordinary global range; it exists
/// only inside the lab.
const INTERNET: &str = "16.77.0.0/24";
/// Starting, planet contact, and the first mapping round.
const MAPPED: Duration = Duration::from_secs(40);

fn planet_id(salt: u64) -> u64 {
    0x7765_6674_0009_0000 | (u64::from(std::process::id()) << 24) | salt
}

fn find(tool: &str) -> String {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{tool}"))
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed; run scripts/install-test-deps.sh (as root)")
        })
}

/// miniupnpd's own nftables table (its forward and NAT chains must exist before it starts).
const MINIUPNPD_TABLE: &str = "weftupnp";

/// Starts miniupnpd in `nat`'s namespace with UPnP and/or NAT-PMP+PCP, allowing the router's LAN;
/// returns once it listens.
fn start_miniupnpd(lab: &Lab, nat: &NatRouter, upnp: bool, natpmp: bool) -> Proc {
    let dir = lab.log_dir();
    let ruleset = dir.join("miniupnpd.nft");
    std::fs::write(
        &ruleset,
        format!(
            "table inet {MINIUPNPD_TABLE} {{
    chain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}
    chain miniupnpd {{ }}
    chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }}
    chain postrouting {{ type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }}
    chain prerouting_miniupnpd {{ }}
    chain postrouting_miniupnpd {{ }}
}}
"
        ),
    )
    .expect("writing the nft ruleset");
    let nft = find("nft");
    lab.exec_ok(&nat.ns, &[&nft, "-f", &ruleset.to_string_lossy()]);
    // The lab router's own FORWARD chain drops what it did not see leave; let forwarded
    // (DNAT-ed) flows through, like a router integrating miniupnpd would.
    lab.iptables(
        &nat.ns,
        &[
            "-I",
            "FORWARD",
            "1",
            "-i",
            &nat.wan_if,
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
            "-j",
            "ACCEPT",
        ],
    );
    let lan_if = nat.lan.iface_of(&nat.ns);
    let yn = |b: bool| if b { "yes" } else { "no" };
    let conf = dir.join("miniupnpd.conf");
    std::fs::write(
        &conf,
        format!(
            "ext_ifname={wan}
listening_ip={lan_if}
port=0
enable_upnp={upnp}
enable_natpmp={natpmp}
secure_mode=no
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
upnp_table_name={MINIUPNPD_TABLE}
upnp_nat_table_name={MINIUPNPD_TABLE}
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 {subnet} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
            wan = nat.wan_if,
            upnp = yn(upnp),
            natpmp = yn(natpmp),
            subnet = nat.lan.subnet(),
        ),
    )
    .expect("writing miniupnpd.conf");
    let mut cmd = Command::new(find("miniupnpd"));
    cmd.arg("-f")
        .arg(&conf)
        .arg("-d")
        .arg("-P")
        .arg(dir.join("miniupnpd.pid"));
    let p = lab.spawn(&nat.ns, "miniupnpd", &cmd);
    let ready = if upnp {
        "HTTP listening on port"
    } else {
        "Listening for NAT-PMP/PCP"
    };
    let start = Instant::now();
    while !lab.stderr(p).contains(ready) {
        assert!(
            lab.try_wait(p).is_none(),
            "miniupnpd exited: {}",
            lab.stderr(p)
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "miniupnpd not ready: {}",
            lab.stderr(p)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

/// miniupnpd's table as `nft` lists it.
fn ruleset(lab: &Lab, nat: &NatRouter) -> String {
    lab.exec_ok(
        &nat.ns,
        &[&find("nft"), "list", "table", "inet", MINIUPNPD_TABLE],
    )
}

/// `local.conf` of a node that maps its port.
fn mapping_conf() -> Value {
    json!({"settings": {"allowTcpFallbackRelay": false, "portMappingEnabled": true}})
}

/// Port mapping restricted to NAT-PMP (RFC 6886), so the test exercises NAT-PMP itself and not
/// PCP, which miniupnpd answers too.
fn natpmp_only_conf() -> Value {
    json!({"settings": {"allowTcpFallbackRelay": false, "portMappingEnabled": true,
                        "portMappingProtocols": ["natpmp"]}})
}

/// Waits for `node`'s `portMapping` to say "mapped"; returns the object.
#[track_caller]
fn wait_mapped(lab: &Lab, node: &WeftNode) -> Value {
    let s = node.wait_for(lab, "port mapped", MAPPED, |s| {
        s["status"]["portMapping"]["state"] == "mapped"
    });
    eprintln!("{}: portMapping {}", node.label, s["status"]["portMapping"]);
    s["status"].clone()
}

/// A root on the internet segment and a leaf behind a NAT router running miniupnpd.
struct World {
    lab: Lab,
    internet: Lan,
    nat: NatRouter,
    root: WeftNode,
    leaf: WeftNode,
    leaf_ip: Ipv4Addr,
    miniupnpd: Proc,
}

fn world(name: &str, salt: u64, kind: NatKind, upnp: bool, natpmp: bool) -> Option<World> {
    world_with(name, salt, kind, upnp, natpmp, mapping_conf())
}

fn world_with(
    name: &str,
    salt: u64,
    kind: NatKind,
    upnp: bool,
    natpmp: bool,
    conf: Value,
) -> Option<World> {
    let lab = Lab::for_test(name)?;
    let internet = lab.internet(INTERNET);
    let root_ns = lab.host("root");
    let root_ip = lab.attach(&internet, &root_ns);
    let nat = lab.nat_router("nat", "192.168.1.0/24", &internet, kind);
    let leaf_ns = lab.host("leaf");
    let leaf_ip = lab.attach(&nat.lan, &leaf_ns);
    let miniupnpd = start_miniupnpd(&lab, &nat, upnp, natpmp);
    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut leaf = WeftNode::new(&lab, &leaf_ns, "leaf", 1);
    leaf.write_local_conf(&conf);
    let planet = private_planet(lab.log_dir(), planet_id(salt), &[(&root, root_ip)]);
    root.install_planet(&planet);
    leaf.install_planet(&planet);
    root.start(&lab);
    leaf.start(&lab);
    Some(World {
        lab,
        internet,
        nat,
        root,
        leaf,
        leaf_ip,
        miniupnpd,
    })
}

/// The checks every mapping gets: the status object, the settings, the gateway's rule.
fn check_mapping(w: &World, status: &Value, protocols: &[&str]) -> (String, u16) {
    let pm = &status["portMapping"];
    assert_eq!(pm["enabled"], true, "{pm}");
    assert!(
        protocols.iter().any(|p| pm["protocol"] == *p),
        "protocol {} not one of {protocols:?}",
        pm["protocol"]
    );
    let settings = &status["config"]["settings"];
    assert_eq!(settings["portMappingEnabled"], true, "{settings}");
    let tertiary = settings["tertiaryPort"].as_u64().expect("tertiaryPort") as u16;
    assert!((20_000..65_500).contains(&tertiary), "{settings}");
    assert_ne!(
        settings["primaryPort"].as_u64(),
        Some(u64::from(tertiary)),
        "{settings}"
    );
    let ext = pm["externalAddress"]
        .as_str()
        .expect("externalAddress")
        .to_string();
    let (ip, port) = ext.split_once('/').expect("ip/port");
    assert_eq!(
        ip,
        w.nat.wan.to_string(),
        "the mapped address is the router's"
    );
    let port: u16 = port.parse().expect("port");
    let left = pm["leaseSecondsLeft"].as_u64().expect("leaseSecondsLeft");
    assert!(
        (3000..=3600).contains(&left),
        "lease of an hour asked for: {pm}"
    );
    // the gateway forwards that port to the leaf's tertiary port
    let rules = ruleset(&w.lab, &w.nat);
    let to = format!("{}:{tertiary}", w.leaf_ip);
    assert!(
        rules
            .lines()
            .any(|l| l.contains("dnat") && l.contains(&port.to_string()) && l.contains(&to)),
        "no DNAT of port {port} to {to} in miniupnpd's table:\n{rules}"
    );
    // and the address is advertised like a local one (the node itself lists it)
    (ext, port)
}

/// Waits until miniupnpd's table no longer forwards `port`.
#[track_caller]
fn wait_unmapped(lab: &Lab, nat: &NatRouter, port: u16) {
    let start = Instant::now();
    loop {
        let rules = ruleset(lab, nat);
        if !rules
            .lines()
            .any(|l| l.contains("dnat") && l.contains(&format!("dport {port} ")))
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "port {port} still forwarded after the leaf stopped:\n{rules}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (a) + (d): a mapping through UPnP IGD (miniupnpd without NAT-PMP), removed on SIGTERM.
#[test]
fn upnp_mapping_is_reported_forwarded_and_removed_on_stop() {
    let Some(mut w) = world("portmap_upnp", 1, NatKind::PortRestricted, true, false) else {
        return;
    };
    let status = wait_mapped(&w.lab, &w.leaf);
    let (_, port) = check_mapping(&w, &status, &["upnp"]);
    let log = w.lab.stderr(w.miniupnpd);
    assert!(log.contains("AddPortMapping"), "miniupnpd log:\n{log}");
    w.leaf.stop(&w.lab);
    wait_unmapped(&w.lab, &w.nat, port);
    w.root.stop(&w.lab);
}

/// (b) + (d): the same through NAT-PMP (miniupnpd with UPnP off; the leaf tries NAT-PMP only).
#[test]
fn natpmp_mapping_is_reported_forwarded_and_removed_on_stop() {
    let Some(mut w) = world_with(
        "portmap_natpmp",
        2,
        NatKind::PortRestricted,
        false,
        true,
        natpmp_only_conf(),
    ) else {
        return;
    };
    let status = wait_mapped(&w.lab, &w.leaf);
    let (_, port) = check_mapping(&w, &status, &["natpmp"]);
    w.leaf.stop(&w.lab);
    wait_unmapped(&w.lab, &w.nat, port);
    w.root.stop(&w.lab);
}

/// (c): the leaf sits behind a symmetric NAT (a fresh random outside port per destination) and
/// the other peer behind a port-restricted one, so hole punching through the root's RENDEZVOUS
/// cannot work (see `symmetric_nat_leaves_stay_relayed_through_the_root` in vl1_netns.rs). With
/// its tertiary port mapped by UPnP, and both members of one network (so trust is established
/// and the leaf pushes its addresses, the mapped one included), the outside peer reaches the
/// leaf directly at the mapped address.
#[test]
fn outside_peer_reaches_the_leaf_directly_through_the_mapped_port() {
    let Some(mut w) = world("portmap_direct", 3, NatKind::Symmetric, true, false) else {
        return;
    };
    let lab = &w.lab;
    let status = wait_mapped(lab, &w.leaf);
    let (ext, _) = check_mapping(&w, &status, &["upnp"]);

    // the outside peer, behind its own port-restricted NAT; it also runs the network controller
    let onat_lan_subnet = "192.168.2.0/24";
    let onat = w.outside_nat(onat_lan_subnet);
    let out_ns = lab.host("out");
    lab.attach(&onat.lan, &out_ns);
    let mut out = WeftNode::new(lab, &out_ns, "out", 2);
    out.install_planet(&w.leaf.home.join("planet"));
    out.start(lab);
    out.wait_online(lab, MAPPED);
    w.leaf.wait_online(lab, MAPPED);

    let v = out.api_post(
        lab,
        &format!("/controller/network/{}______", out.address()),
        // Public: every member trusts every other at once (a private network would need the
        // members' certificates exchanged first, which takes VL2 traffic between them).
        &json!({"name": "portmap", "private": false}),
    );
    let nwid = v["id"].as_str().expect("network id").to_string();
    for m in [&out, &w.leaf] {
        m.api_post(lab, &format!("/network/{nwid}"), &json!({}));
        out.api_post(
            lab,
            &format!("/controller/network/{nwid}/member/{}", m.address()),
            &json!({"authorized": true}),
        );
    }
    for m in [&out, &w.leaf] {
        let start = Instant::now();
        loop {
            m.assert_running(lab);
            let n = m.api_get(lab, &format!("/network/{nwid}"));
            if n["status"] == "OK" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "{}: network {nwid} not OK: {n}",
                m.label
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // Traffic between them (so the leaf, receiving from a trusted peer, pushes its paths), until
    // the outside peer prefers a direct path at the mapped address.
    let start = Instant::now();
    loop {
        out.ping(lab, w.leaf.address());
        let s = out.status().unwrap_or_default();
        if let Some(p) = peer(&s, w.leaf.address())
            && preferred_path(p) == Some(ext.as_str())
        {
            eprintln!(
                "out -> leaf: direct at the mapped address {ext} after {:.1} s: {p}",
                start.elapsed().as_secs_f64()
            );
            // no other direct path: the leaf's symmetric NAT offers none
            let others: Vec<&Value> = paths(p)
                .into_iter()
                .filter(|x| x["address"] != ext.as_str())
                .collect();
            assert!(
                others.is_empty(),
                "direct paths besides the mapping: {others:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "out never went direct to the leaf at {ext}; its entry: {:?}",
            peer(&s, w.leaf.address())
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    out.stop(lab);
    w.leaf.stop(lab);
    w.root.stop(lab);
}

impl World {
    /// A port-restricted NAT router on the same internet segment as the root.
    fn outside_nat(&self, subnet: &str) -> NatRouter {
        self.lab
            .nat_router("onat", subnet, &self.internet, NatKind::PortRestricted)
    }
}
