//! End to end: `weft-perf --only veth --duration 1` on namespaces of its own, then the JSON and
//! SVG it wrote. Needs root and `ip` (skipped with a message otherwise, or with
//! WEFT_SKIP_NETNS=1).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn runnable() -> Result<(), String> {
    if std::env::var_os("WEFT_SKIP_NETNS").is_some() {
        return Err("WEFT_SKIP_NETNS is set".into());
    }
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return Err("not root".into());
    }
    let has_ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .any(|p| Path::new(p).exists())
        || Command::new("ip").arg("-V").output().is_ok();
    if !has_ip {
        return Err("no `ip` (iproute2)".into());
    }
    Ok(())
}

#[test]
fn veth_run_writes_json_and_svg() {
    if let Err(why) = runnable() {
        eprintln!("skipped veth_run_writes_json_and_svg: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let child = Command::new(env!("CARGO_BIN_EXE_weft-perf"))
        .args([
            "--only",
            "veth",
            "--duration",
            "1",
            "--streams",
            "2",
            "--json",
        ])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running weft-perf");
    let pid = child.id();
    let out = child.wait_with_output().expect("weft-perf output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("| metric | veth |"), "{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
            .expect("valid JSON");
    let subjects = v["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 1, "{v}");
    let s = &subjects[0];
    assert_eq!(s["name"], "veth");
    assert!(s.get("error").is_none(), "{s}");
    let gbit = |k: &str| s[k]["gbit_s"].as_f64().unwrap_or(0.0);
    assert!(gbit("tcp_1") > 0.0 && gbit("tcp_n") > 0.0, "{s}");
    assert_eq!(s["tcp_n"]["streams"], 2);
    assert!(s["tcp_1"]["bytes"].as_u64().unwrap_or(0) > 0);
    let udp = &s["udp"];
    assert!(udp["received_packets"].as_u64().unwrap_or(0) > 0, "{udp}");
    assert!(udp["received_mbit_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(udp["payload"], 1200);
    for k in ["latency_idle", "latency_load"] {
        let l = &s[k];
        let p = |q: &str| l[q].as_f64().unwrap_or(f64::NAN);
        assert!(l["samples"].as_u64().unwrap_or(0) > 0, "{k}: {l}");
        assert!(p("p50_us") > 0.0, "{k}: {l}");
        assert!(p("p50_us") <= p("p99_us"), "{k}: {l}");
        assert!(
            p("p99_us") <= p("p999_us") && p("p999_us") <= p("max_us"),
            "{k}: {l}"
        );
        let buckets = l["buckets"].as_array().expect("histogram buckets");
        let counted: u64 = buckets.iter().filter_map(|b| b[1].as_u64()).sum();
        assert_eq!(counted, l["samples"].as_u64().unwrap_or(0), "{k}: {l}");
    }
    assert!(s["latency_load"]["load_gbit_s"].as_f64().unwrap_or(0.0) > 0.0);
    // no baseline of its own to compare with: no ratios
    assert_eq!(v["ratios"]["vs_veth"]["subjects"], serde_json::json!({}));

    let svg = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("veth TCP 1:"));

    // nothing left behind: the run's namespaces (named after its PID) are gone
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let tag = format!("weftperf{pid}-");
    let list = String::from_utf8_lossy(&ns.stdout);
    assert!(!list.lines().any(|l| l.starts_with(&tag)), "{list}");
    assert!(!std::env::temp_dir().join(format!("weftperf{pid}")).exists());
}
