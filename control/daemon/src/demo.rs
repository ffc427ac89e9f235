//! `weft demo`: a private world in network namespaces on this machine — a root, a controller and
//! two members, each a real `weft daemon` — then a network, two joins, pings, a TCP throughput
//! run with a progress bar, a summary, and everything removed again (also on Ctrl-C).
//!
//! Needs root and iproute2; sends nothing outside the namespaces it creates (they have no
//! default route and no link to the host's interfaces).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use weft_wire::world::Root;
use weft_wire::{Identity, World, WorldType};

/// Arguments of `weft demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Seconds of TCP throughput measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Keep the namespaces and homes (for a look around); remove them with Ctrl-C.
    #[arg(long)]
    keep: bool,
}

const PORT: u16 = 9993;
const SUBNET: &str = "10.99.0";

/// What must be undone: processes (by PID) and namespaces (by name), and the work folder.
#[derive(Debug, Default)]
struct Cleanup {
    children: Vec<Child>,
    namespaces: Vec<String>,
    dir: Option<PathBuf>,
}

impl Cleanup {
    fn run(&mut self) {
        for c in &mut self.children {
            // SIGTERM our own child by PID, then wait; SIGKILL if it lingers
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !matches!(c.try_wait(), Ok(Some(_))) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

type Shared = Arc<Mutex<Cleanup>>;

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| "running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `f` in a thread that entered namespace `ns` (sockets it opens stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> Result<T> {
        let fd = std::fs::File::open(&path).with_context(|| path.clone())?;
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {path}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// One HTTP request to a node's API inside its namespace.
fn api(ns: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("http://127.0.0.1:{PORT}{path}");
    let token = token.to_string();
    let method = method.to_string();
    in_ns(ns, move || -> Result<Value> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let resp = match (method.as_str(), body) {
            ("POST", Some(b)) => agent.post(&url).header("X-ZT1-Auth", &token).send_json(b),
            _ => agent.get(&url).header("X-ZT1-Auth", &token).call(),
        };
        let mut resp = resp.with_context(|| format!("{method} {url}"))?;
        Ok(resp.body_mut().read_json()?)
    })?
}

struct Node {
    label: &'static str,
    ns: String,
    home: PathBuf,
    ip: Ipv4Addr,
    identity: Identity,
}

impl Node {
    fn token(&self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(t) = std::fs::read_to_string(self.home.join("authtoken.secret"))
                && !t.trim().is_empty()
            {
                return Ok(t.trim().to_string());
            }
            if Instant::now() > deadline {
                bail!("{}: the daemon did not start", self.label);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        api(&self.ns, &self.token()?, method, path, body)
    }
}

fn wait<T>(
    what: &str,
    timeout: Duration,
    stop: &AtomicBool,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn step(n: usize, text: &str) {
    println!("[{n}/7] {text}");
}

/// Runs the demo.
pub(crate) fn run(args: DemoArgs) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("weft demo builds network namespaces: run it as root (e.g. sudo weft demo)");
    }
    let cleanup: Shared = Arc::new(Mutex::new(Cleanup::default()));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (cleanup, stop) = (cleanup.clone(), stop.clone());
        ctrlc::set_handler(move || {
            stop.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: removing the demo's namespaces and processes");
            if let Ok(mut c) = cleanup.lock() {
                c.run();
            }
            std::process::exit(130);
        })
        .context("installing the Ctrl-C handler")?;
    }
    let r = demo(&args, &cleanup, &stop);
    if args.keep && r.is_ok() {
        println!("--keep: namespaces stay up; press Ctrl-C to remove everything");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if let Ok(mut c) = cleanup.lock() {
        c.run();
    }
    if stop.load(Ordering::SeqCst) {
        // the Ctrl-C handler cleaned up and exits with 130; whatever failed meanwhile is moot
        return Ok(ExitCode::from(130));
    }
    println!("cleaned up: namespaces, processes and homes removed");
    r.map(|()| ExitCode::SUCCESS)
}

fn demo(args: &DemoArgs, cleanup: &Shared, stop: &AtomicBool) -> Result<()> {
    let tag = format!("weftdemo{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    cleanup.lock().map_err(|_| anyhow::anyhow!("lock"))?.dir = Some(dir.clone());
    let exe = std::env::current_exe()?;

    step(
        1,
        "identities and a private planet (no public roots are ever contacted)",
    );
    let labels = ["root", "ctl", "a", "b"];
    let mut nodes = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let identity = Identity::generate(&mut OsRng);
        let home = dir.join(label);
        std::fs::create_dir_all(&home)?;
        std::fs::write(
            home.join("identity.secret"),
            identity.to_secret_string()?.as_bytes(),
        )?;
        std::fs::write(
            home.join("identity.public"),
            identity.to_public().to_string(),
        )?;
        std::fs::write(
            home.join("local.conf"),
            r#"{"settings":{"allowTcpFallbackRelay":false,"portMappingEnabled":false}}"#,
        )?;
        nodes.push(Node {
            label,
            ns: format!("{tag}-{label}"),
            home,
            ip: format!("{SUBNET}.{}", i + 1).parse()?,
            identity,
        });
    }
    let mut key = [0u8; 64];
    OsRng.fill_bytes(&mut key);
    let mut planet = World {
        kind: WorldType::Planet,
        id: 0x7765_6674_0000_0000 | u64::from(OsRng.next_u32()),
        timestamp: 1,
        updates_must_be_signed_by: weft_wire::identity::public_from_private(&key),
        signature: [0; 96],
        roots: vec![Root {
            identity: nodes[0].identity.to_public(),
            stable_endpoints: vec![SocketAddr::new(IpAddr::V4(nodes[0].ip), PORT)],
        }],
    };
    planet.sign(&key);
    for n in &nodes {
        std::fs::write(n.home.join("planet"), planet.to_bytes())?;
    }

    step(
        2,
        "four network namespaces on one switch (no route to anything else)",
    );
    let sw = format!("{tag}-sw");
    for ns in std::iter::once(&sw).chain(nodes.iter().map(|n| &n.ns)) {
        ip(&["netns", "add", ns])?;
        cleanup
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .namespaces
            .push(ns.clone());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &sw, "link", "set", "br0", "up"])?;
    for (i, n) in nodes.iter().enumerate() {
        let (a, b) = (format!("p{i}"), format!("e{i}"));
        ip(&[
            "-n", &sw, "link", "add", &a, "type", "veth", "peer", "name", &b,
        ])?;
        ip(&["-n", &sw, "link", "set", &b, "netns", &n.ns])?;
        ip(&["-n", &sw, "link", "set", &a, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &n.ns,
            "addr",
            "add",
            &format!("{}/24", n.ip),
            "dev",
            &b,
        ])?;
        ip(&["-n", &n.ns, "link", "set", &b, "up"])?;
    }

    step(
        3,
        "starting four weft daemons (root, controller, two members)",
    );
    for n in &nodes {
        let log = std::fs::File::create(n.home.join("daemon.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &n.ns])
            .arg(&exe)
            .arg("daemon")
            .arg(&n.home)
            .args(["-p", &PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting weft daemon")?;
        cleanup
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .children
            .push(child);
    }
    for n in &nodes[1..] {
        wait(
            &format!("{} online", n.label),
            Duration::from_secs(60),
            stop,
            || {
                n.api("GET", "/status", None)
                    .ok()
                    .filter(|s| s["online"] == true)
            },
        )?;
    }

    step(
        4,
        "the controller creates a private network; both members join and are authorized",
    );
    let (ctl, a, b) = (&nodes[1], &nodes[2], &nodes[3]);
    let net = ctl.api(
        "POST",
        &format!("/controller/network/{}______", ctl.identity.address()),
        Some(json!({
            "name": "demo",
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
            "routes": [{"target": "10.147.20.0/24", "via": null}],
        })),
    )?;
    let nwid = net["id"].as_str().context("network id")?.to_string();
    for m in [a, b] {
        m.api("POST", &format!("/network/{nwid}"), Some(json!({})))?;
        ctl.api(
            "POST",
            &format!("/controller/network/{nwid}/member/{}", m.identity.address()),
            Some(json!({"authorized": true})),
        )?;
    }
    let mut addrs = Vec::new();
    for m in [a, b] {
        let ip4 = wait(
            &format!("{} configured", m.label),
            Duration::from_secs(60),
            stop,
            || {
                let n = m.api("GET", &format!("/network/{nwid}"), None).ok()?;
                (n["status"] == "OK").then_some(())?;
                n["assignedAddresses"]
                    .as_array()?
                    .iter()
                    .filter_map(|x| x.as_str()?.split('/').next()?.parse::<Ipv4Addr>().ok())
                    .next()
            },
        )?;
        println!(
            "      {} ({}) is {ip4} on network {nwid}",
            m.label,
            m.identity.address()
        );
        addrs.push(ip4);
    }

    step(
        5,
        "ping a -> b through the virtual network (UDP echo, 10 rounds)",
    );
    let rtt = udp_ping(&a.ns, &b.ns, addrs[1], 10)?;
    println!("      ping: average RTT {rtt:.3} ms");

    step(6, &format!("TCP throughput a -> b for {} s", args.seconds));
    let gbits = throughput(
        &a.ns,
        &b.ns,
        addrs[1],
        Duration::from_secs(args.seconds),
        stop,
    )?;

    step(7, "summary");
    let peer = a.api("GET", &format!("/peer/{}", b.identity.address()), None)?;
    let path = peer["paths"]
        .as_array()
        .and_then(|p| p.iter().find(|x| x["preferred"] == true))
        .and_then(|x| x["address"].as_str())
        .map_or_else(
            || "relayed through the root".to_string(),
            |x| format!("direct ({x})"),
        );
    println!(
        "      network      {nwid} (private, managed by {})",
        ctl.identity.address()
    );
    println!("      path a -> b  {path}");
    println!("      RTT          {rtt:.3} ms");
    println!("      throughput   {gbits:.2} Gbit/s (one TCP stream, this machine's cores)");
    Ok(())
}

/// Round trips of a small UDP datagram from `from` to an echo socket at `to_ip` in `to`
/// (through both nodes' virtual ports); the average in milliseconds. No `ping` binary needed.
/// The first rounds may wait for ARP and the peers' first contact: each round retries for up to
/// 10 s.
fn udp_ping(from: &str, to: &str, to_ip: Ipv4Addr, rounds: u32) -> Result<f64> {
    use std::net::UdpSocket;
    let addr = SocketAddr::new(IpAddr::V4(to_ip), 5202);
    let echo = in_ns(to, move || UdpSocket::bind(addr))??;
    echo.set_read_timeout(Some(Duration::from_secs(12)))?;
    const STOP: [u8; 4] = [0xff; 4];
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        // ends on the client's stop marker, or when nothing came for 12 s
        while let Ok((n, peer)) = echo.recv_from(&mut buf) {
            if buf[..n] == STOP {
                return;
            }
            let _ = echo.send_to(&buf[..n], peer);
        }
    });
    let sock = in_ns(from, || UdpSocket::bind("0.0.0.0:0"))??;
    sock.set_read_timeout(Some(Duration::from_millis(250)))?;
    let mut total = Duration::ZERO;
    for round in 0..rounds {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 64];
        let rtt = loop {
            let sent = Instant::now();
            sock.send_to(&round.to_be_bytes(), addr)?;
            match sock.recv_from(&mut buf) {
                Ok((4, _)) if buf[..4] == round.to_be_bytes() => break sent.elapsed(),
                _ if Instant::now() < deadline => continue,
                _ => bail!("no echo from {to_ip} within 10 s"),
            }
        };
        // the first round includes ARP resolution and first contact; it is not a round trip time
        if round > 0 {
            total += rtt;
        }
    }
    for _ in 0..3 {
        let _ = sock.send_to(&STOP, addr);
    }
    let _ = server.join();
    Ok(total.as_secs_f64() * 1000.0 / f64::from(rounds.saturating_sub(1).max(1)))
}

/// Sends as much as it can over one TCP stream from `from` to `to_ip` for `duration`, with a
/// progress bar; returns Gbit/s as the receiver counted it.
fn throughput(
    from: &str,
    to: &str,
    to_ip: Ipv4Addr,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<f64> {
    let addr = SocketAddr::new(IpAddr::V4(to_ip), 5201);
    let listener = in_ns(to, move || TcpListener::bind(addr))??;
    let server = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let start = Instant::now();
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok((total, start.elapsed()))
    });
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("      [{bar:40}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let stream = in_ns(from, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(10))
    })??;
    let mut s = stream;
    // a broken path must end the demo with an error, not hang it
    s.set_write_timeout(Some(Duration::from_secs(15)))?;
    let chunk = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration && !stop.load(Ordering::SeqCst) {
        s.write_all(&chunk)?;
        sent += chunk.len() as u64;
        let secs = start.elapsed().as_secs_f64().max(0.001);
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(format!("{:.2} Gbit/s", sent as f64 * 8.0 / secs / 1e9));
    }
    s.shutdown(std::net::Shutdown::Write)?;
    bar.finish();
    let (received, took) = server
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(received as f64 * 8.0 / took.as_secs_f64().max(0.001) / 1e9)
}
