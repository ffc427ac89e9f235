//! `weft demo` end to end: it builds its namespaces, runs four daemons, configures a network,
//! pings and measures, prints the summary and removes everything — also when interrupted.
//! Needs root and iproute2 (like the other namespace tests; `WEFT_SKIP_NETNS=1` skips them).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_conformance::netns::{listed_namespaces, require_root_and_tools};
use weft_conformance::weftnode::weft_bin;

fn should_run() -> bool {
    if std::env::var_os("WEFT_SKIP_NETNS").is_some() {
        eprintln!("WEFT_SKIP_NETNS set: demo test skipped");
        return false;
    }
    if let Err(e) = require_root_and_tools() {
        panic!("{e}");
    }
    true
}

fn demo_namespaces(pid: u32) -> Vec<String> {
    let tag = format!("weftdemo{pid}-");
    listed_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&tag))
        .collect()
}

#[test]
fn demo_runs_and_cleans_up() {
    if !should_run() {
        return;
    }
    let out = Command::new(weft_bin())
        .args(["demo", "--seconds", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "weft demo failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "[7/7] summary",
        "path a -> b  direct (10.99.0.4/9993)",
        "Gbit/s",
        "cleaned up",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in\n{stdout}");
    }
    let rtt_line = stdout.lines().find(|l| l.contains("RTT  ")).unwrap();
    assert!(!rtt_line.contains(" - ms"), "{rtt_line}");
}

#[test]
fn ctrl_c_removes_everything() {
    if !should_run() {
        return;
    }
    let mut child = Command::new(weft_bin())
        .args(["demo", "--seconds", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // interrupt once the daemons run and the namespaces exist
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = lines.next().expect("demo output ended early").unwrap();
        if line.starts_with("[4/7]") {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    assert!(
        !demo_namespaces(pid).is_empty(),
        "namespaces exist while running"
    );
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    assert!(
        demo_namespaces(pid).is_empty(),
        "namespaces left: {:?}",
        demo_namespaces(pid)
    );
    assert!(!std::env::temp_dir().join(format!("weftdemo{pid}")).exists());
}
