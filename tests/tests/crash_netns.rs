//! Crashes while writing: the daemon is killed with SIGKILL at random moments while the API
//! makes it write network files and local.conf; after every restart the identity is the same,
//! every state file is whole (atomic writes: old or new, never torn), and the networks it lists
//! are the ones on disk. spec: service.md §2 (home folder), issue "bad input and crashes"

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_conformance::netns::Lab;
use weft_conformance::weftnode::{WeftNode, private_planet};

/// Ad-hoc network ids (`ffSSSSEEEE000000`): joined without any controller.
fn adhoc(i: u16) -> String {
    format!("ff{:04x}{:04x}000000", 100 + i, 100 + i)
}

fn check_home(node: &WeftNode, identity: &str) -> Vec<String> {
    let id = std::fs::read_to_string(node.home.join("identity.secret")).unwrap();
    assert_eq!(
        id.trim(),
        identity.trim(),
        "identity.secret changed or torn"
    );
    if let Ok(text) = std::fs::read_to_string(node.home.join("local.conf")) {
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("local.conf torn ({e}): {text:?}"));
        assert!(v.is_object());
    }
    let mut nets = Vec::new();
    if let Ok(rd) = std::fs::read_dir(node.home.join("networks.d")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).unwrap();
            if let Some(id) = name.strip_suffix(".local.conf") {
                let text = String::from_utf8(bytes).unwrap();
                assert!(
                    text.starts_with("allowManaged=") && text.ends_with("allowDNS=0\n")
                        || text.ends_with("allowDNS=1\n"),
                    "{name} torn: {text:?}"
                );
                assert_eq!(id.len(), 16);
            } else if let Some(id) = name.strip_suffix(".conf") {
                // ad-hoc configs are never saved: the placeholder, whole
                assert_eq!(bytes, b"\n", "{name} torn");
                nets.push(id.to_string());
            } else {
                assert!(
                    name.starts_with('.'),
                    "stray file {name} (a temporary left behind is hidden)"
                );
            }
        }
    }
    nets.sort();
    nets
}

#[test]
fn killed_while_writing_loses_nothing() {
    let Some(lab) = Lab::for_test("crash") else {
        return;
    };
    let ns = lab.host("n");
    lab.bridge_lan(None, &[&ns], "10.40.0.0/24");
    // the ad-hoc networks' TAPs get 6plane addresses
    lab.sysctl(&ns, "net.ipv6.conf.default.disable_ipv6", "0");
    let mut node = WeftNode::new(&lab, &ns, "n", 3);
    let identity = std::fs::read_to_string(node.home.join("identity.secret")).unwrap();
    let planet = private_planet(
        lab.log_dir(),
        0x7765_6674_0004_0000 | u64::from(std::process::id()),
        &[(&node, "10.40.0.1".parse().unwrap())],
    );
    node.install_planet(&planet);
    let mut seed: u32 = std::process::id() | 1;
    let mut rnd = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed % n
    };
    let mut joined = 0u16;
    for round in 0..8 {
        node.start(&lab);
        let _ = node.authtoken(&lab);
        // a burst of writes (joins, settings), killed somewhere in the middle
        let deadline = Instant::now() + Duration::from_millis(u64::from(100 + rnd(500)));
        let mut this_round = 0;
        while Instant::now() < deadline {
            // a few networks per round (every TAP costs the kernel time to tear down), and
            // settings writes as fast as the API takes them
            if this_round < 2 {
                let path = format!("/network/{}", adhoc(joined));
                let (code, _) = node.api_body(&lab, "POST", &path, &json!({}));
                assert_eq!(code, 200);
                joined += 1;
                this_round += 1;
            }
            let (code, _) = node.api_body(
                &lab,
                "POST",
                "/config/settings",
                &json!({"round": round, "joined": joined}),
            );
            assert_eq!(code, 200);
        }
        node.kill(&lab);
        let on_disk = check_home(&node, &identity);
        assert!(on_disk.len() <= usize::from(joined));
    }
    // after the last crash: the node comes back with exactly the networks on disk
    node.start(&lab);
    let on_disk = check_home(&node, &identity);
    assert!(!on_disk.is_empty());
    let start = Instant::now();
    loop {
        let listed: Vec<String> = node
            .api_get(&lab, "/network")
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["nwid"].as_str().unwrap().to_string())
            .collect();
        let mut listed = listed;
        listed.sort();
        if listed == on_disk {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listed {listed:?}, on disk {on_disk:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = node.api_get(&lab, "/status");
    assert_eq!(st["address"], node.address());
    node.stop(&lab);
}
