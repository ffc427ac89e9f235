//! AF_XDP over a veth pair between two network namespaces this test creates (root only; skipped
//! with a message otherwise, or with `WEFT_SKIP_NETNS=1`).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::super::{Backend, Options, RxBatch, TxBatch, UdpIo, XdpMode, open, sys};
use super::XdpIo;

const A4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);

/// Two namespaces joined by a veth pair; deleted (with the pair) on drop.
struct Lab {
    a: String,
    b: String,
    ifa: String,
    created: Vec<String>,
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// A fresh lab, or `None` (with the reason printed) where this machine cannot make one.
    fn new() -> Option<Lab> {
        if std::env::var_os("WEFT_SKIP_NETNS").is_some() {
            eprintln!("skipped: WEFT_SKIP_NETNS is set");
            return None;
        }
        // SAFETY: `geteuid` has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: AF_XDP namespace tests need root");
            return None;
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "wxdp{}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
            ifa: format!("{tag}x"),
            created: Vec::new(),
        };
        let ifb = format!("{tag}y");
        for ns in [lab.a.clone(), lab.b.clone()] {
            if let Err(e) = run(&["netns", "add", &ns]) {
                eprintln!("skipped: cannot create a network namespace: {e}");
                return None;
            }
            lab.created.push(ns);
        }
        let (a, b, ifa) = (lab.a.clone(), lab.b.clone(), lab.ifa.clone());
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "link", "add", "name", &ifa, "netns", &a, "type", "veth", "peer", "name", &ifb,
                "netns", &b,
            ],
            vec!["-n", &a, "addr", "add", "10.77.0.1/24", "dev", &ifa],
            vec!["-n", &a, "addr", "add", "fd77::1/64", "dev", &ifa, "nodad"],
            vec!["-n", &b, "addr", "add", "10.77.0.2/24", "dev", &ifb],
            vec!["-n", &b, "addr", "add", "fd77::2/64", "dev", &ifb, "nodad"],
            vec!["-n", &a, "link", "set", "lo", "up"],
            vec!["-n", &b, "link", "set", "lo", "up"],
            vec!["-n", &a, "link", "set", &ifa, "up"],
            vec!["-n", &b, "link", "set", &ifb, "up"],
        ];
        for s in steps {
            if let Err(e) = run(&s) {
                panic!("lab setup: {e}");
            }
        }
        Some(lab)
    }

    /// Whether `ip link show` lists an XDP program on A's end.
    fn xdp_attached(&self) -> bool {
        let out = run(&["-n", &self.a, "link", "show", "dev", &self.ifa]).expect("ip link show");
        // The names contain "xdp" themselves; an attached program shows as `prog/xdp id N`.
        out.contains("prog/xdp")
    }

    /// `ping` from B to `to` succeeds.
    fn ping_from_b(&self, to: IpAddr) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.b,
                "ping",
                "-c1",
                "-W2",
                &to.to_string(),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.created {
            if let Err(e) = run(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` (sockets made there stay in it).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("namespace file");
        // SAFETY: `file` is an open namespace descriptor; only this thread changes namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

fn opts(mode: XdpMode) -> Options {
    Options {
        prefer: Some(Backend::AfXdp),
        xdp_mode: mode,
        ..Options::default()
    }
}

/// A blocking plain socket in B, with a receive buffer big enough for a burst.
fn peer(lab: &Lab, ip: IpAddr) -> UdpSocket {
    in_ns(&lab.b, move || {
        let s = UdpSocket::bind((ip, 0)).expect("peer bind");
        sys::setsockopt_int(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            4 << 20,
        )
        .expect("SO_RCVBUFFORCE");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    })
}

fn datagram(i: usize) -> Vec<u8> {
    let len = 1 + (i * 37) % 1400;
    (0..len)
        .map(|k| (k as u8) ^ (i as u8).wrapping_mul(13))
        .collect()
}

/// Receives until `want` datagrams came or 3 s passed, waiting on `fd()`.
fn recv_all(io: &mut dyn UdpIo, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut rx = RxBatch::new(32);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < want && Instant::now() < deadline {
        let n = io.recv(&mut rx).expect("recv");
        assert_eq!(n, rx.len());
        got.extend(rx.iter().map(|(a, d)| (a, d.to_vec())));
        if n == 0 {
            sys::poll_readable(io.fd().as_raw_fd(), 100);
        }
    }
    got
}

fn round_trip(a_ip: IpAddr, b_ip: IpAddr) {
    let Some(lab) = Lab::new() else { return };
    let mut io = in_ns(&lab.a, move || {
        let s = sys::bind(SocketAddr::new(a_ip, 0), &Options::default()).unwrap();
        XdpIo::new(s, &opts(XdpMode::Generic))
            .map_err(|(_, why)| why)
            .expect("af_xdp")
    });
    assert_eq!(io.backend(), Backend::AfXdp);
    let detail = io.describe();
    assert!(
        detail.contains(&lab.ifa) && detail.contains("generic"),
        "{detail}"
    );
    assert!(lab.xdp_attached(), "program attached");
    let local = io.local_addr();
    assert_eq!(local.ip(), a_ip);
    let p = peer(&lab, b_ip);
    let from = p.local_addr().unwrap();

    // 200 datagrams from B arrive, in order, with their source.
    for i in 0..200 {
        p.send_to(&datagram(i), local).unwrap();
    }
    let got = recv_all(&mut io, 200);
    assert_eq!(got.len(), 200, "all 200 received");
    for (i, (src, d)) in got.iter().enumerate() {
        assert_eq!(*src, from, "source of {i}");
        assert_eq!(*d, datagram(i), "datagram {i}");
    }
    let st = io.stats();
    assert_eq!((st.rx_datagrams, st.rx_drops), (200, 0), "{st:?}");
    assert_eq!(io.kernel.stats().rx_datagrams, 0, "all through the XSKs");

    // A datagram too large for one frame is fragmented; the program passes the fragments, the
    // kernel reassembles them and the socket half of the back-end delivers it.
    let big: Vec<u8> = (0..3000).map(|k| k as u8).collect();
    p.send_to(&big, local).unwrap();
    let got = recv_all(&mut io, 1);
    assert_eq!(got, vec![(from, big)]);
    assert_eq!(
        io.kernel.stats().rx_datagrams,
        1,
        "through the kernel socket"
    );

    // Traffic the program does not steer still reaches the kernel: ping, UDP to another port.
    assert!(lab.ping_from_b(a_ip), "ping passes");
    let other = in_ns(&lab.a, move || UdpSocket::bind((a_ip, 0)).unwrap());
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    p.send_to(b"other port", other.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, src) = other.recv_from(&mut buf).expect("other port receives");
    assert_eq!((&buf[..n], src), (&b"other port"[..], from));
    assert!(
        recv_all(&mut io, 1).is_empty(),
        "nothing else for the back-end"
    );

    // Sending goes through the kernel (routing, neighbour resolution), GSO runs included.
    let mut tx = TxBatch::new();
    for i in 0..200 {
        tx.push(from, &datagram(i));
    }
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while !tx.is_empty() && Instant::now() < deadline {
        sent += io.send(&mut tx).expect("send");
    }
    assert_eq!(sent, 200);
    for i in 0..200 {
        let mut buf = [0u8; 2048];
        let (n, src) = p.recv_from(&mut buf).expect("peer receives");
        assert_eq!(src, local);
        assert_eq!(&buf[..n], &datagram(i)[..], "echo {i}");
    }
    io.send_ttl(from, 9, b"ttl").unwrap();
    let (n, _) = p.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ttl");

    // Dropping the back-end closes the link: the program is gone.
    drop(io);
    assert!(!lab.xdp_attached(), "program detached on drop");
    assert!(lab.ping_from_b(a_ip));
}

#[test]
fn veth_round_trip_ipv4_generic() {
    round_trip(A4.into(), B4.into());
}

#[test]
fn veth_round_trip_ipv6_generic() {
    round_trip(A6.into(), B6.into());
}

/// Auto mode: native on veth where the kernel allows it, else generic; either way datagrams
/// arrive through the XSK. Wildcard and loopback binds are refused with a reason, and auto
/// probing falls through to the next back-end.
#[test]
fn auto_mode_and_refusals() {
    let Some(lab) = Lab::new() else { return };
    let (io, probe) = in_ns(&lab.a, move || {
        open(SocketAddr::new(A4.into(), 0), &Options::default()).unwrap()
    });
    eprintln!("auto: {probe:?}");
    assert_eq!(probe.chosen, Backend::AfXdp, "{probe:?}");
    assert!(probe.skipped.is_empty());
    assert!(
        probe.detail.contains("native") || probe.detail.contains("generic"),
        "{probe:?}"
    );
    // A second one cannot attach while the first holds the interface: it says why and the
    // probe falls through.
    let (second, forced) = in_ns(&lab.a, move || {
        let a = SocketAddr::new(A4.into(), 0);
        let second = open(a, &Options::default()).unwrap().1;
        let forced = XdpIo::new(
            sys::bind(a, &Options::default()).unwrap(),
            &opts(XdpMode::Generic),
        )
        .map(drop)
        .map_err(|(sock, why)| (sock.is_some(), why));
        (second, forced)
    });
    assert_ne!(second.chosen, Backend::AfXdp);
    assert!(second.skipped[0].1.contains("busy"), "{second:?}");
    let (gave_back, why) = forced.unwrap_err();
    assert!(gave_back, "the socket comes back for the next back-end");
    eprintln!("second attach: {why}");
    drop(io);
    assert!(!lab.xdp_attached());

    // The same through the concrete type, to see which path each datagram took.
    let (mut io, mode) = in_ns(&lab.a, move || {
        let s = sys::bind(SocketAddr::new(A4.into(), 0), &Options::default()).unwrap();
        let io = XdpIo::new(s, &opts(XdpMode::Auto))
            .map_err(|(_, why)| why)
            .expect("auto");
        let mode = io.attached;
        (io, mode)
    });
    eprintln!("auto attached {mode:?}: {}", io.describe());
    let p = peer(&lab, B4.into());
    for i in 0..20 {
        p.send_to(&datagram(i), io.local_addr()).unwrap();
    }
    let got = recv_all(&mut io, 20);
    assert_eq!(got.len(), 20);
    assert!(got.iter().enumerate().all(|(i, (_, d))| *d == datagram(i)));
    assert_eq!(io.kernel.stats().rx_datagrams, 0, "all through the XSK");
    assert_eq!(io.stats.rx_datagrams, 20);
    drop(io);
    assert!(!lab.xdp_attached());

    let (wild, lo, wild6, forced) = in_ns(&lab.a, || {
        let wild = open("0.0.0.0:0".parse().unwrap(), &Options::default())
            .unwrap()
            .1;
        let lo = open("127.0.0.1:0".parse().unwrap(), &Options::default())
            .unwrap()
            .1;
        let wild6 = open("[::]:0".parse().unwrap(), &Options::default())
            .unwrap()
            .1;
        let forced = open("0.0.0.0:0".parse().unwrap(), &opts(XdpMode::Auto)).unwrap_err();
        (wild, lo, wild6, forced)
    });
    for p in [&wild, &lo, &wild6] {
        assert_ne!(p.chosen, Backend::AfXdp);
        assert_eq!(p.skipped[0].0, Backend::AfXdp);
        eprintln!("{p:?}");
    }
    assert!(wild.skipped[0].1.contains("wildcard"), "{wild:?}");
    assert!(wild6.skipped[0].1.contains("wildcard"), "{wild6:?}");
    assert!(lo.skipped[0].1.contains("loopback"), "{lo:?}");
    assert!(forced.to_string().contains("wildcard"), "{forced}");
    assert!(!lab.xdp_attached());
}
