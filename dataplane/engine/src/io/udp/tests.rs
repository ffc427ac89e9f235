//! Loopback tests of every back-end available on the machine running them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::*;

fn v4() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn v6() -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
}

fn opts(b: Backend) -> Options {
    Options {
        prefer: Some(b),
        ..Options::default()
    }
}

/// The back-ends that open here on loopback (AF_XDP never does: it refuses loopback).
fn available() -> Vec<Backend> {
    let list: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|&b| match open(v4(), &opts(b)) {
            Ok((io, probe)) => {
                assert_eq!(io.backend(), b);
                assert_eq!(probe.chosen, b);
                true
            }
            Err(e) => {
                eprintln!("{b} unavailable here: {e}");
                false
            }
        })
        .collect();
    assert!(list.contains(&Backend::Plain) && list.contains(&Backend::Mmsg));
    list
}

/// Waits up to 100 ms for `io` to be readable.
fn wait_readable(io: &dyn UdpIo) {
    sys::poll_readable(io.fd().as_raw_fd(), 100);
}

/// Receives until `want` datagrams came in, nothing came for 1 s, or 5 s passed; returns
/// (source, bytes) in order.
fn recv_all(io: &mut dyn UdpIo, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut rx = RxBatch::new(16);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = Instant::now();
    while got.len() < want && Instant::now() < deadline && last.elapsed() < Duration::from_secs(1) {
        let n = io.recv(&mut rx).expect("recv");
        assert_eq!(n, rx.len());
        assert_eq!(rx.iter().count(), n);
        got.extend(rx.iter().map(|(a, d)| (a, d.to_vec())));
        if n == 0 {
            wait_readable(io);
        } else {
            last = Instant::now();
        }
    }
    got
}

/// A datagram whose bytes say which flow and index it is.
fn datagram(flow: u8, i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u8).wrapping_mul(31) ^ flow ^ (i as u8))
        .collect()
}

/// 100 datagram sizes: mixed 1..=1472 (a fixed pseudo-random walk), then a run of 40 equal
/// ones and a shorter last one (a GSO run), then a few more mixed ones.
fn sizes(seed: u32) -> Vec<usize> {
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (x >> 8) as usize % 1472
    };
    let mut v: Vec<usize> = (0..50).map(|_| next()).collect();
    v.extend(std::iter::repeat_n(1200, 40));
    v.push(700);
    v.extend((0..9).map(|_| next()));
    assert_eq!(v.len(), 100);
    v
}

/// Two senders of `backend` to one receiver of `backend`, 100 datagrams each (200 in all):
/// everything arrives, intact and in order per flow; the counters agree.
fn round_trip(backend: Backend, bind: SocketAddr) {
    let (mut rx_io, _) = open(bind, &opts(backend)).unwrap();
    let to = rx_io.local_addr();
    let mut senders: Vec<Box<dyn UdpIo>> = (0..2)
        .map(|_| open(bind, &opts(backend)).unwrap().0)
        .collect();
    let mut expect: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
    for (f, s) in senders.iter_mut().enumerate() {
        let mut tx = TxBatch::new();
        let flow: Vec<Vec<u8>> = sizes(f as u32 + 7)
            .into_iter()
            .enumerate()
            .map(|(i, len)| datagram(f as u8, i, len))
            .collect();
        for d in &flow {
            tx.push(to, d);
        }
        assert_eq!(tx.len(), 100);
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tx.is_empty() && Instant::now() < deadline {
            sent += s.send(&mut tx).unwrap();
        }
        assert_eq!(sent, 100, "{backend}: all sent");
        assert!(tx.is_empty());
        let st = s.stats();
        assert_eq!(st.tx_datagrams, 100);
        assert_eq!(
            st.tx_bytes,
            flow.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        assert_eq!(st.tx_errors, 0);
        if backend == Backend::Plain {
            assert_eq!(st.tx_syscalls, 100);
            assert_eq!(st.gso_batches, 0);
        } else {
            assert!(
                st.gso_batches >= 1,
                "{backend}: the equal run went as GSO: {st:?}"
            );
            assert!(st.tx_syscalls < 100, "{backend}: batched sends: {st:?}");
        }
        expect.insert(s.local_addr(), flow);
    }
    let got = recv_all(rx_io.as_mut(), 200);
    assert_eq!(got.len(), 200, "{backend}: all 200 received");
    let mut per_flow: HashMap<SocketAddr, Vec<Vec<u8>>> = HashMap::new();
    for (from, d) in got {
        per_flow.entry(from).or_default().push(d);
    }
    assert_eq!(per_flow.len(), 2);
    for (from, want) in &expect {
        let have = &per_flow[from];
        assert_eq!(have.len(), want.len(), "{backend}: flow from {from}");
        for (i, (h, w)) in have.iter().zip(want).enumerate() {
            assert!(h == w, "{backend}: flow from {from}, datagram {i} differs");
        }
    }
    let st = rx_io.stats();
    assert_eq!(st.rx_datagrams, 200);
    let total: u64 = expect.values().flatten().map(|d| d.len() as u64).sum();
    assert_eq!(st.rx_bytes, total);
    assert_eq!(st.rx_drops, 0);
    if backend == Backend::Plain {
        assert_eq!(st.gro_batches, 0);
    } else {
        assert!(
            st.gro_batches >= 1,
            "{backend}: GSO runs arrive as GRO: {st:?}"
        );
        assert!(st.rx_syscalls < 200, "{backend}: batched receives: {st:?}");
    }
}

#[test]
fn round_trip_every_backend_ipv4() {
    let list = available();
    for b in &list {
        round_trip(*b, v4());
    }
    eprintln!("tested over IPv4: {list:?}");
}

#[test]
fn round_trip_every_backend_ipv6() {
    let list = available();
    for b in &list {
        round_trip(*b, v6());
    }
}

/// A GSO sender to a receiver without GRO: the kernel splits the run, nothing is lost.
#[test]
fn gso_to_plain_receiver_is_segmented() {
    for sender in available().into_iter().filter(|&b| b != Backend::Plain) {
        let (mut r, _) = open(v4(), &opts(Backend::Plain)).unwrap();
        let (mut s, _) = open(v4(), &opts(sender)).unwrap();
        let mut tx = TxBatch::new();
        for i in 0..30 {
            tx.push(
                r.local_addr(),
                &datagram(9, i, if i == 29 { 10 } else { 1000 }),
            );
        }
        assert_eq!(s.send(&mut tx).unwrap(), 30);
        assert_eq!(s.stats().gso_batches, 1, "{sender}");
        let got = recv_all(r.as_mut(), 30);
        assert_eq!(got.len(), 30, "{sender}");
        for (i, (from, d)) in got.iter().enumerate() {
            assert_eq!(*from, s.local_addr());
            assert_eq!(*d, datagram(9, i, if i == 29 { 10 } else { 1000 }));
        }
    }
}

/// TTL / hop limit per datagram, both families, every back-end.
#[test]
fn send_ttl_sets_the_ttl() {
    for b in available() {
        for (bind, v6) in [(v4(), false), (v6(), true)] {
            let r = std::net::UdpSocket::bind(bind).unwrap();
            let (mut s, _) = open(bind, &opts(b)).unwrap();
            let to = r.local_addr().unwrap();
            s.send_ttl(to, 3, b"hello").unwrap();
            r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            // Wait for it (blocking peek), then read it with its TTL.
            let mut buf = [0u8; 64];
            r.peek(&mut buf).unwrap();
            let (n, ttl) = sys::recv_with_ttl(r.as_raw_fd(), v6, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(ttl, Some(3), "{b} v6={v6}");
            assert_eq!(s.stats().tx_datagrams, 1);
        }
    }
}

/// Failing destinations (port 0, the IPv4 broadcast address without SO_BROADCAST, an IPv4
/// address on an IPv6-only socket) drop only their datagrams; the rest of the batch goes.
#[test]
fn failing_destinations_do_not_abort_the_batch() {
    for b in available() {
        for bind in [v4(), v6()] {
            let (mut r, _) = open(bind, &opts(b)).unwrap();
            let (mut s, _) = open(bind, &opts(b)).unwrap();
            let to = r.local_addr();
            let mut bad_port = to;
            bad_port.set_port(0);
            let bad_other = if bind.is_ipv4() {
                SocketAddr::from((Ipv4Addr::BROADCAST, 9))
            } else {
                SocketAddr::from((Ipv4Addr::LOCALHOST, 9))
            };
            let mut tx = TxBatch::new();
            let mut want = Vec::new();
            for i in 0..30 {
                match i {
                    10 => tx.push(bad_port, &[1; 100]),
                    // A run of equal sizes to a failing destination (a failing GSO send).
                    15..=18 => tx.push(bad_other, &[2; 100]),
                    _ => {
                        let d = datagram(1, i, 100);
                        tx.push(to, &d);
                        want.push(d);
                    }
                }
            }
            let sent = s.send(&mut tx).unwrap();
            assert_eq!(sent, 25, "{b} {bind}");
            assert!(tx.is_empty());
            let st = s.stats();
            assert_eq!(st.tx_errors, 5, "{b} {bind}: {st:?}");
            assert_eq!(st.tx_datagrams, 25);
            let got = recv_all(r.as_mut(), 25);
            let got: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
            assert_eq!(got, want, "{b} {bind}");
        }
    }
}

/// A socket with GRO can be forced to plain, which turns it off (no super-datagrams without
/// the segment size).
#[test]
fn probe_forced_and_auto() {
    let (io, probe) = open(v4(), &opts(Backend::Plain)).unwrap();
    assert_eq!(io.backend(), Backend::Plain);
    assert_eq!(probe.chosen, Backend::Plain);
    let skipped: Vec<Backend> = probe.skipped.iter().map(|(b, _)| *b).collect();
    assert_eq!(skipped, [Backend::AfXdp, Backend::IoUring, Backend::Mmsg]);
    assert!(
        probe
            .skipped
            .iter()
            .all(|(_, why)| why.contains("not requested"))
    );

    let err = open(v4(), &opts(Backend::AfXdp)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("loopback"), "{err}");

    let (io, probe) = open(v4(), &Options::default()).unwrap();
    assert_eq!(io.backend(), probe.chosen);
    let best = available()[0];
    assert_eq!(probe.chosen, best);
    assert_eq!(probe.skipped[0].0, Backend::AfXdp);
    assert!(probe.skipped[0].1.contains("loopback"), "{probe:?}");
    for (b, why) in &probe.skipped {
        assert!(*b < probe.chosen && !why.is_empty());
    }
    assert_eq!(
        probe.skipped.len(),
        Backend::ALL.iter().position(|&b| b == best).unwrap()
    );
    eprintln!("auto: {probe:?}");
}

#[test]
fn backend_names_round_trip() {
    for b in Backend::ALL {
        assert_eq!(b.to_string().parse::<Backend>().unwrap(), b);
    }
    assert_eq!(Backend::IoUring.to_string(), "io_uring");
    assert_eq!(Backend::AfXdp.to_string(), "af_xdp");
    assert!("uring".parse::<Backend>().is_err());
}

#[test]
fn rx_batch_splits_gro_super_datagrams() {
    let mut rx = RxBatch::new(2);
    let mut st = UdpStats::default();
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let slot = rx.next_slot();
    for (k, b) in slot[..25].iter_mut().enumerate() {
        *b = k as u8;
    }
    rx.commit_slot(from, 25, Some(10), &mut st);
    rx.next_slot()[..3].copy_from_slice(b"abc");
    rx.commit_slot(from, 3, None, &mut st);
    let lens: Vec<usize> = rx.iter().map(|(_, d)| d.len()).collect();
    assert_eq!(lens, [10, 10, 5, 3]);
    assert_eq!(rx.len(), 4);
    assert_eq!(rx.iter().nth(2).unwrap().1, &[20, 21, 22, 23, 24]);
    assert_eq!((st.rx_datagrams, st.rx_bytes, st.gro_batches), (4, 28, 1));
    rx.clear();
    assert!(rx.is_empty() && rx.iter().next().is_none());
}

#[test]
fn tx_groups_follow_the_gso_rule() {
    let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let b = SocketAddr::from((Ipv4Addr::LOCALHOST, 2));
    let mut tx = TxBatch::new();
    for (to, len) in [
        (a, 100),
        (a, 100),
        (a, 50), // shorter: ends the run
        (a, 100),
        (a, 200), // longer: starts a new one
        (b, 200), // other destination
        (b, 200),
    ] {
        tx.push(to, &vec![0; len]);
    }
    let mut g = Vec::new();
    sys::groups(&tx, true, 64, &mut g);
    let shape: Vec<(usize, usize, usize)> =
        g.iter().map(|g| (g.start, g.count, g.segment)).collect();
    assert_eq!(shape, [(0, 3, 100), (3, 1, 100), (4, 1, 200), (5, 2, 200)]);
    sys::groups(&tx, false, 64, &mut g);
    assert_eq!(g.len(), 7);
    sys::groups(&tx, true, 2, &mut g);
    assert_eq!(g.len(), 2);
    // Runs stop at 64 segments and at the datagram size limit.
    let mut big = TxBatch::new();
    for _ in 0..100 {
        big.push(a, &[0; 100]);
    }
    for _ in 0..50 {
        big.push(b, &[0; 1400]);
    }
    sys::groups(&big, true, 64, &mut g);
    let counts: Vec<usize> = g.iter().map(|g| g.count).collect();
    assert_eq!(counts, [64, 36, 46, 4]);
    big.consume(64);
    assert_eq!(big.len(), 86);
    assert_eq!(big.iter().next().unwrap().1.len(), 100);
    big.consume(86);
    assert!(big.is_empty());
}

/// A flood into a tiny receive buffer: the kernel drops some, and the SO_RXQ_OVFL count
/// (reported with the next datagram queued) plus what arrived adds up to what was sent.
#[test]
fn receive_queue_drops_are_counted() {
    for b in available() {
        let small = Options {
            recv_buffer: 4096,
            gso: false,
            ..opts(b)
        };
        let (mut r, _) = open(v4(), &small).unwrap();
        // Without GSO: the kernel counts dropped buffers, and a super-datagram is one.
        let no_gso = Options {
            gso: false,
            ..opts(b)
        };
        let (mut s, _) = open(v4(), &no_gso).unwrap();
        let mut tx = TxBatch::new();
        for i in 0..300 {
            tx.push(r.local_addr(), &datagram(3, i, 900 + (i % 2) * 100));
        }
        let mut sent = 0;
        while !tx.is_empty() {
            sent += s.send(&mut tx).unwrap();
        }
        let mut got = recv_all(r.as_mut(), 300).len();
        // One more, queued after the drops, carries their count.
        tx.push(r.local_addr(), b"last");
        sent += s.send(&mut tx).unwrap();
        got += recv_all(r.as_mut(), 1).len();
        let st = r.stats();
        assert!(st.rx_drops > 0, "{b}: {st:?}");
        assert_eq!(got as u64 + st.rx_drops, sent as u64, "{b}: {st:?}");
    }
}

/// io_uring: more datagrams than provided buffers arrive before the first receive; the
/// multishot receive runs out of buffers, ends, and is re-armed without losing any.
#[test]
fn io_uring_rearms_after_running_out_of_buffers() {
    let small = Options {
        batch: 4, // 64 provided buffers
        gso: false,
        ..opts(Backend::IoUring)
    };
    let Ok((mut r, _)) = open(v4(), &small) else {
        eprintln!("io_uring unavailable here");
        return;
    };
    let (mut s, _) = open(v4(), &opts(Backend::Mmsg)).unwrap();
    let mut tx = TxBatch::new();
    let mut want = Vec::new();
    for i in 0..300 {
        let d = datagram(4, i, 100 + (i % 2) * 10);
        tx.push(r.local_addr(), &d);
        want.push(d);
    }
    assert_eq!(s.send(&mut tx).unwrap(), 300);
    let got: Vec<Vec<u8>> = recv_all(r.as_mut(), 300)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(got.len(), 300);
    assert!(got == want);
    assert_eq!(r.stats().rx_drops, 0);
}
