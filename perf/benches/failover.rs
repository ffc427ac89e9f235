//! Failover time of an active-backup bond: how long traffic stops when the active link is cut.
//!
//! Builds the two-link lab of `weft_conformance::bondlab` (two weft members joined by two veth
//! pairs, a root/controller on a third namespace, policy `lab-ab`: active-backup with a 1 s
//! failover interval), then repeats: find the active link from the links' counters, start a
//! 10 ms ping, cut the active link 1 s in, count the pings lost (interruption = lost × 10 ms),
//! bring the link back, wait out the bond's flap damping (35 s) and until it has two live
//! links again. The interruptions go
//! into an `hdrhistogram`; prints p50/p90/max and the distribution. Needs root, iproute2,
//! iptables and ping; skipped with a message otherwise. Cycles: `WEFT_FAILOVER_CYCLES`
//! (default 8). Not a criterion bench (one measurement takes seconds): `cargo bench -p
//! weft-perf --bench failover`.

use std::time::Duration;

use hdrhistogram::Histogram;
use weft_conformance::bondlab::{World, wait_bonded, world};

/// Ping interval (the measurement's resolution).
const INTERVAL_MS: u64 = 10;

fn tx(w: &World, i: usize) -> u64 {
    let out = w.lab.exec_ok(
        &w.links[i].a,
        &["ip", "-j", "-s", "link", "show", "dev", &w.links[i].a_if],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
}

fn set_link(w: &World, i: usize, up: bool) {
    w.lab.exec_ok(
        &w.links[i].a,
        &[
            "ip",
            "link",
            "set",
            &w.links[i].a_if,
            if up { "up" } else { "down" },
        ],
    );
}

/// Pings B from A every 10 ms for `count`; returns (sent, answered).
fn ping(w: &World, count: u32) -> (u32, u32) {
    let out = w.lab.exec(
        &w.a.ns,
        &[
            "ping",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            &w.b_ip.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("");
    let num = |word: &str| -> u32 {
        line.split(',')
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (num("transmitted"), num("received"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cycles: u32 = std::env::var("WEFT_FAILOVER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let Some(w) = world("bench_failover", 7, "lab-ab") else {
        eprintln!("failover bench skipped: needs root and iproute2");
        return;
    };
    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000, 3).expect("histogram bounds");
    for cycle in 0..cycles {
        // which link carries the traffic now
        let before = [tx(&w, 0), tx(&w, 1)];
        let _ = ping(&w, 20);
        let used = [tx(&w, 0) - before[0], tx(&w, 1) - before[1]];
        let active = usize::from(used[1] > used[0]);
        let cutter = {
            let (ns, dev) = (
                w.links[active].a.name().to_string(),
                w.links[active].a_if.clone(),
            );
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1_000));
                let _ = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "ip", "link", "set", &dev, "down"])
                    .status();
            })
        };
        // 6 s of pings; the cut happens 1 s in
        let (sent, answered) = ping(&w, 600);
        let _ = cutter.join();
        let lost = u64::from(sent.saturating_sub(answered));
        let ms = (lost * INTERVAL_MS).max(1);
        h.record(ms).expect("within bounds");
        eprintln!(
            "cycle {}/{cycles}: link {} cut, {lost} of {sent} pings lost: {ms} ms interrupted",
            cycle + 1,
            active + 1
        );
        set_link(&w, active, true);
        if cycle + 1 < cycles {
            // A link that fails again within 4× its refractory period (8 s at first) is held
            // back twice as long each time (flap damping): wait that out so every cut meets a
            // bond with two eligible links.
            std::thread::sleep(Duration::from_secs(35));
            wait_bonded(&w.lab, &w.a, &w.b);
            std::thread::sleep(Duration::from_millis(1_500));
        }
    }
    println!("failover time, active-backup, failoverInterval 1000 ms, {cycles} cuts:");
    println!(
        "  p50 {} ms, p90 {} ms, max {} ms, mean {:.0} ms",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.max(),
        h.mean()
    );
    for v in h.iter_recorded() {
        println!(
            "  {:>6} ms  {}",
            v.value_iterated_to(),
            "#".repeat(v.count_at_value() as usize)
        );
    }
}
