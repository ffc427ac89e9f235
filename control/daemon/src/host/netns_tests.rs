//! Real devices: each test makes a network namespace of its own (`weft-tap-<pid>-<n>`), enters it
//! from a dedicated thread, creates TAPs there and configures them with `weft_engine::io::tap` and
//! [`super::netlink`], then checks the result through netlink, through `ip -j` in the namespace,
//! and through frames. The host's own interfaces and routes are never touched; the namespace is
//! deleted even when a test fails. These tests need root and `/dev/net/tun` and FAIL without
//! them (CI runs as root). spec: service.md §8.1, §8.2; vl2.md §3.2

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_engine::io::tap::{
    DEFAULT_MTU, Tap, TapOptions, choose_tap_name, interface_exists, multicast_macs, tap_name,
};

use super::managed::{
    Applied, Cidr, ConfigRoute, LocalNetSettings, desired_addrs, desired_routes, sync,
};
use super::netlink::Netlink;

/// A namespace that exists from `new` until drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        require_root_and_tun();
        let name = format!(
            "weft-tap-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run `ip netns add` (is iproute2 installed?)");
        assert!(st.success(), "ip netns add {name}: {st}");
        Netns { name }
    }

    /// Runs `f` on a fresh thread that has entered this namespace; panics in `f` propagate.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            });
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// `ip -j <args>` run in the namespace, parsed.
    fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "ip", "-j"])
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "ip -j {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn require_root_and_tun() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the TAP/netlink tests create network namespaces and devices: run them as root"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "the TAP/netlink tests need /dev/net/tun (modprobe tun, or a container with the device)"
    );
}

fn c(s: &str) -> Cidr {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

/// Reads frames from `tap` until `want` accepts one or `timeout` passes.
fn read_until(tap: &Tap, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        match tap.read(&mut buf) {
            Ok(n) if want(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("read from TAP: {e}"),
        }
    }
    None
}

/// An Ethernet broadcast ARP request from `sha`/`spa` for `tpa`.
fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

fn addr_infos(v: &Value) -> Vec<(String, u64)> {
    v[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .map(|a| {
            (
                a["local"].as_str().expect("local").to_owned(),
                a["prefixlen"].as_u64().expect("prefixlen"),
            )
        })
        .collect()
}

#[test]
fn tap_with_managed_addresses_routes_and_arp() {
    let ns = Netns::new();
    let nwid = 0x7c55a8da82c90312u64;
    // spec: vl2.md §2.1 worked example (nwid 7c55a8da82c90312, address 7c55a8da82).
    let mac = [0x12, 0x7f, 0x9c, 0x2a, 0x00, 0x2a];
    ns.run(|| {
        // spec: service.md §8.1 — naming in a namespace with no zt interfaces.
        let ifname = choose_tap_name(nwid, None);
        assert_eq!(ifname, "ztu3lwdwmq");
        let tap = Tap::create(&ifname, &TapOptions::default()).expect("create TAP");
        assert_eq!(tap.name(), ifname);
        assert!(interface_exists(&ifname));
        assert_eq!(choose_tap_name(nwid, None), tap_name(nwid, 1));
        assert_eq!(choose_tap_name(nwid, Some(&ifname)), tap_name(nwid, 1));
        assert_eq!(choose_tap_name(nwid, Some("office0")), "office0");

        tap.set_mac(mac).expect("set MAC");
        tap.set_mtu(DEFAULT_MTU).expect("set MTU");
        tap.set_up(true).expect("bring up");

        let link = ns.ip_json(&["link", "show", "dev", &ifname]);
        assert_eq!(link[0]["address"], "12:7f:9c:2a:00:2a", "{link}");
        assert_eq!(link[0]["mtu"], 2800, "{link}");
        let flags: Vec<&str> = link[0]["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            flags.contains(&"UP") && flags.contains(&"MULTICAST"),
            "{link}"
        );

        let settings = LocalNetSettings::default();
        let assigned = [
            c("10.147.17.38/24"),
            c("fd7c:55a8:da82:c903:1299:937c:55a8:da82/88"),
            c("8.8.8.8/24"),     // global: not allowed by default
            c("169.254.9.9/16"), // link-local: never
        ];
        let routes = [
            ConfigRoute {
                target: c("192.168.100.0/24"),
                via: Some(ip("10.147.17.1")),
            },
            ConfigRoute {
                target: c("10.147.17.0/24"), // the address's own prefix: kernel route
                via: None,
            },
            ConfigRoute {
                target: c("fd99::/64"),
                via: Some(ip("fd7c:55a8:da82:c903:1299:9300::1")),
            },
            ConfigRoute {
                target: c("0.0.0.0/0"), // allowDefault off
                via: Some(ip("10.147.17.1")),
            },
        ];
        let want_addrs = desired_addrs(&assigned, &settings);
        assert_eq!(want_addrs, assigned[..2].to_vec());
        let want_routes = desired_routes(&routes, &want_addrs, &settings, true);
        assert_eq!(want_routes.len(), 2, "{want_routes:?}");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut applied = Applied::default();
        rt.block_on(async {
            let nl = Netlink::connect().expect("netlink");
            let ifindex = nl.ifindex(&ifname).await.expect("ifindex");
            assert_eq!(ifindex, tap.ifindex().expect("SIOCGIFINDEX"));
            assert!(nl.ifindex("weft-nope0").await.is_err());

            let plan = sync(&want_addrs, &want_routes, &applied);
            let report = nl.apply(&plan, &ifname, &mut applied).await.expect("apply");
            // The IPv6 route's source had to finish DAD first (kernel defaults: DAD on).
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let tentative = nl.tentative_addrs(ifindex).await.expect("flags");
            assert!(
                want_addrs.iter().all(|a| !tentative.contains(a)),
                "{tentative:?}"
            );
            assert_eq!(applied.addrs, want_addrs);
            assert_eq!(applied.routes, want_routes);
            // Applying the same again is a no-op plan.
            assert!(sync(&want_addrs, &want_routes, &applied).is_empty());

            let have = nl.addrs(ifindex).await.expect("list addresses");
            for a in &want_addrs {
                assert!(have.contains(a), "{a} missing from {have:?}");
            }
            let mut have_routes = nl.routes(ifindex).await.expect("list routes");
            have_routes.sort();
            let mut sorted = want_routes.clone();
            sorted.sort();
            assert_eq!(have_routes, sorted);
        });

        // The same through iproute2.
        let infos = addr_infos(&ns.ip_json(&["addr", "show", "dev", &ifname]));
        assert!(
            infos.contains(&("10.147.17.38".to_owned(), 24)),
            "{infos:?}"
        );
        assert!(
            infos.contains(&("fd7c:55a8:da82:c903:1299:937c:55a8:da82".to_owned(), 88)),
            "{infos:?}"
        );
        let r4 = ns.ip_json(&["route", "show", "dev", &ifname, "proto", "static"]);
        assert_eq!(r4.as_array().map(Vec::len), Some(1), "{r4}");
        assert_eq!(r4[0]["dst"], "192.168.100.0/24", "{r4}");
        assert_eq!(r4[0]["gateway"], "10.147.17.1", "{r4}");
        assert_eq!(r4[0]["prefsrc"], "10.147.17.38", "{r4}");
        assert_eq!(r4[0]["metric"], 5000, "{r4}");
        let r6 = ns.ip_json(&["-6", "route", "show", "dev", &ifname, "proto", "static"]);
        assert_eq!(r6.as_array().map(Vec::len), Some(1), "{r6}");
        assert_eq!(r6[0]["dst"], "fd99::/64", "{r6}");
        assert_eq!(
            r6[0]["gateway"].as_str().map(ip),
            Some(ip("fd7c:55a8:da82:c903:1299:9300::1")),
            "{r6}"
        );
        assert_eq!(r6[0]["metric"], 5000, "{r6}");

        // Frames: the kernel answers an ARP request written into the TAP.
        let peer = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let me = Ipv4Addr::new(10, 147, 17, 38);
        let them = Ipv4Addr::new(10, 147, 17, 1);
        let req = arp_request(peer, them, me);
        assert_eq!(tap.write(&req).expect("write ARP request"), req.len());
        let reply = read_until(&tap, Duration::from_secs(3), |f| {
            f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0x00, 0x02]
        })
        .expect("the kernel's ARP reply, read from the TAP");
        assert_eq!(reply[0..6], peer, "to the asker");
        assert_eq!(reply[6..12], mac, "from the TAP's MAC");
        assert_eq!(reply[22..28], mac, "sender hardware address");
        assert_eq!(reply[28..32], me.octets(), "sender protocol address");
        assert_eq!(reply[32..38], peer, "target hardware address");
        assert_eq!(reply[38..42], them.octets(), "target protocol address");

        // spec: vl2.md §3.2 — groups the kernel joined on the TAP (IPv4 all-hosts, IPv6
        // all-nodes, the solicited-node group of the IPv6 address), read in this namespace.
        let groups = multicast_macs(&ifname).expect("dev_mcast");
        for g in [
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
            [0x33, 0x33, 0x00, 0x00, 0x00, 0x01],
            [0x33, 0x33, 0xff, 0xa8, 0xda, 0x82],
        ] {
            assert!(groups.contains(&g), "{g:02x?} not in {groups:02x?}");
        }

        // Everything withdrawn: routes and addresses go, in the plan's order.
        rt.block_on(async {
            let nl = Netlink::connect().expect("netlink");
            let ifindex = nl.ifindex(&ifname).await.expect("ifindex");
            let plan = sync(&[], &[], &applied);
            assert_eq!(plan.del_addrs.len(), 2);
            assert_eq!(plan.del_routes.len(), 2);
            let report = nl.apply(&plan, &ifname, &mut applied).await.expect("apply");
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            assert_eq!(applied, Applied::default());
            let have = nl.addrs(ifindex).await.expect("list addresses");
            assert!(
                have.iter().all(|a| !want_addrs.contains(a)),
                "left: {have:?}"
            );
            assert!(nl.routes(ifindex).await.expect("list routes").is_empty());
            // Deleting what is already gone is not an error.
            nl.del_addr(ifindex, want_addrs[0])
                .await
                .expect("idempotent");
            nl.del_route(ifindex, &want_routes[0])
                .await
                .expect("idempotent");
        });
        let infos = addr_infos(&ns.ip_json(&["addr", "show", "dev", &ifname]));
        assert!(
            infos.iter().all(|(a, _)| a.starts_with("fe80:")),
            "{infos:?}"
        );
        let r4 = ns.ip_json(&["route", "show", "dev", &ifname, "proto", "static"]);
        assert_eq!(r4.as_array().map(Vec::len), Some(0), "{r4}");

        // Closing the (non-persistent) TAP removes the interface.
        tap.set_up(false).expect("take down");
        drop(tap);
        assert!(!interface_exists(&ifname));
    });
}

#[test]
fn tap_options_and_kernel_chosen_names() {
    let ns = Netns::new();
    ns.run(|| {
        // An empty name lets the kernel choose.
        let t = Tap::create("", &TapOptions::default()).expect("create TAP");
        assert!(t.name().starts_with("tap"), "{}", t.name());
        assert!(interface_exists(t.name()));
        // Nothing to read yet: non-blocking.
        let mut buf = [0u8; 64];
        let e = t.read(&mut buf).expect_err("nothing queued");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(t);

        // Multi-queue: a second queue attaches to the same interface.
        let opts = TapOptions {
            multi_queue: true,
            ..TapOptions::default()
        };
        let q0 = Tap::create("weftmq0", &opts).expect("queue 0");
        let q1 = Tap::create("weftmq0", &opts).expect("queue 1");
        assert_eq!(q0.ifindex().expect("index"), q1.ifindex().expect("index"));
        // A single-queue open of a multi-queue device is refused.
        assert!(Tap::create("weftmq0", &TapOptions::default()).is_err());
        drop((q0, q1));
        assert!(!interface_exists("weftmq0"));

        // An MTU out of range is refused before any ioctl.
        let t = Tap::create("weftmtu0", &TapOptions::default()).expect("create TAP");
        assert_eq!(
            t.set_mtu(u32::MAX).expect_err("too big").kind(),
            io::ErrorKind::InvalidInput
        );
        t.set_mtu(1280).expect("set MTU");
    });
    // The TAP was dropped when the thread ended.
    let links = ns.ip_json(&["link", "show"]);
    let names: Vec<&str> = links
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    assert_eq!(names, ["lo"], "{links}");
}
