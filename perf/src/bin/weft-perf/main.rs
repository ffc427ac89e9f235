//! `weft-perf`: the data-plane perf harness. Measures TCP throughput (one and N streams), UDP
//! throughput and packet rate at a fixed payload, and UDP echo round-trip times (idle and under
//! a TCP stream) for bare veth, weft (per data-plane back-end) and whatever comparators are
//! installed (zerotier-one, kernel WireGuard, wireguard-go, boringtun), each on namespaces it
//! creates and removes. See perf/README.md, "Perf harness".
//!
//! The traffic generator, sink and echo are this binary too: hidden `__server`, `__tcp`,
//! `__udp`, `__echo` subcommands run inside the namespaces with `ip netns exec`.

mod report;
mod subjects;
mod sys;
mod traffic;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use report::{Latency, Meta, Report, Skipped, SubjectResult, Throughput, UdpResult};
use subjects::{Ctx, Endpoints, Kind, Subject};
use sys::Registry;

#[derive(Debug, Parser)]
#[command(
    name = "weft-perf",
    version,
    about = "Data-plane perf harness: throughput, packet rate and latency of weft against bare \
             veth and other tunnels, on network namespaces (needs root and iproute2)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    hidden: Option<Hidden>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Seconds per measurement (five measurements per subject).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Connections of the multi-stream TCP measurement (1: skip it).
    #[arg(long, default_value_t = 4)]
    streams: u32,
    /// UDP payload bytes per datagram.
    #[arg(long, default_value_t = 1200)]
    udp_size: usize,
    /// Microseconds between UDP echo requests.
    #[arg(long, default_value_t = 1000)]
    echo_interval_us: u64,
    /// The weft binary (default: `weft` next to this executable, else in PATH).
    #[arg(long, value_name = "PATH")]
    weft: Option<PathBuf>,
    /// weft data-plane back-ends to measure, one subject each (written to local.conf as
    /// settings.dataplane.backend); `mmsg/w2` also sets settings.dataplane.workers to 2.
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    weft_backends: Vec<String>,
    /// Only these subjects: kinds (veth, weft, zerotier-one, wireguard-kernel, wireguard-go,
    /// boringtun) or full names (weft-mmsg).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keep namespaces, daemons and homes when done (for debugging); Ctrl-C removes them.
    #[arg(long)]
    keep: bool,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a plot (throughput bars, RTT percentiles) as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Hidden {
    /// Sink, echo and control port (in the server namespace).
    #[command(name = "__server", hide = true)]
    Server,
    #[command(name = "__tcp", hide = true)]
    Tcp {
        to: Ipv4Addr,
        #[arg(long)]
        streams: u32,
        #[arg(long)]
        duration: f64,
    },
    #[command(name = "__udp", hide = true)]
    Udp {
        to: Ipv4Addr,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        duration: f64,
    },
    #[command(name = "__echo", hide = true)]
    Echo {
        to: Ipv4Addr,
        #[arg(long)]
        duration: f64,
        #[arg(long)]
        interval_us: u64,
        #[arg(long, default_value_t = 30.0)]
        warmup: f64,
    },
    /// One local-API request (in a node's namespace); prints the body.
    #[command(name = "__api", hide = true)]
    Api {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        token_file: PathBuf,
        #[arg(long, default_value = "")]
        body: String,
        method: String,
        path: String,
    },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<ExitCode> {
    println!("{}", serde_json::to_string(v)?);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.hidden {
        Some(Hidden::Server) => traffic::server().map(|()| ExitCode::SUCCESS),
        Some(Hidden::Tcp {
            to,
            streams,
            duration,
        }) => traffic::tcp_client(to, streams, secs(duration)).and_then(|t| print_json(&t)),
        Some(Hidden::Udp { to, size, duration }) => {
            traffic::udp_client(to, size, secs(duration)).and_then(|u| print_json(&u))
        }
        Some(Hidden::Echo {
            to,
            duration,
            interval_us,
            warmup,
        }) => traffic::echo_client(
            to,
            secs(duration),
            Duration::from_micros(interval_us),
            secs(warmup),
        )
        .and_then(|l| print_json(&l)),
        Some(Hidden::Api {
            port,
            token_file,
            body,
            method,
            path,
        }) => std::fs::read_to_string(&token_file)
            .with_context(|| token_file.display().to_string())
            .and_then(|t| sys::http(port, t.trim(), &method, &path, &body))
            .map(|b| {
                println!("{b}");
                ExitCode::SUCCESS
            }),
        None => run(cli.run),
    };
    r.unwrap_or_else(|e| {
        eprintln!("weft-perf: {e:#}");
        ExitCode::FAILURE
    })
}

/// The effective user is root (the owner of `/proc/self` is the effective uid).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `--weft`, else `weft` next to this executable, else in PATH.
fn find_weft(arg: Option<PathBuf>, exe: &std::path::Path) -> Option<PathBuf> {
    arg.or_else(|| exe.parent().map(|d| d.join("weft")).filter(|p| p.is_file()))
        .or_else(|| sys::which("weft"))
}

/// The subjects in run order, and the ones skipped for missing programs.
fn plan(args: &RunArgs, weft: Option<&std::path::Path>) -> Result<(Vec<Subject>, Vec<Skipped>)> {
    let mut all = vec![Subject {
        name: "veth".into(),
        kind: Kind::Veth,
    }];
    for b in &args.weft_backends {
        if b.is_empty()
            || !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/')
        {
            bail!("--weft-backends: bad back-end name {b:?}");
        }
        all.push(Subject {
            name: format!("weft-{b}"),
            kind: Kind::Weft { backend: b.clone() },
        });
    }
    for k in [
        Kind::WireguardKernel,
        Kind::WireguardGo,
        Kind::Boringtun,
        Kind::ZeroTierOne,
    ] {
        all.push(Subject {
            name: k.name().into(),
            kind: k,
        });
    }
    for o in &args.only {
        if !Kind::NAMES.contains(&o.as_str()) && !all.iter().any(|s| &s.name == o) {
            bail!(
                "--only: unknown subject {o:?} (kinds: {})",
                Kind::NAMES.join(", ")
            );
        }
    }
    let mut subjects = Vec::new();
    let mut skipped = Vec::new();
    for s in all {
        let wanted =
            args.only.is_empty() || args.only.iter().any(|o| o == &s.name || o == s.kind.name());
        if !wanted {
            continue;
        }
        match subjects::availability(&s.kind, weft) {
            Ok(()) => subjects.push(s),
            Err(reason) => skipped.push(Skipped {
                name: s.name,
                reason,
            }),
        }
    }
    Ok((subjects, skipped))
}

fn run(args: RunArgs) -> Result<ExitCode> {
    if !is_root() {
        bail!("weft-perf builds network namespaces: run it as root");
    }
    if sys::which("ip").is_none() {
        bail!("weft-perf needs `ip` (iproute2)");
    }
    if args.duration <= 0.0 || args.streams == 0 {
        bail!("--duration and --streams must be positive");
    }
    let exe = std::env::current_exe()?;
    let weft = find_weft(args.weft.clone(), &exe);
    let (subjects, skipped) = plan(&args, weft.as_deref())?;
    for k in &skipped {
        eprintln!("skipping {}: {}", k.name, k.reason);
    }

    let reg = Registry::default();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (reg, stop) = (reg.clone(), stop.clone());
        ctrlc::set_handler(move || {
            stop.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: removing weft-perf's namespaces and processes");
            reg.lock().clean();
            std::process::exit(130);
        })
        .context("installing the Ctrl-C handler")?;
    }
    let tag = format!("weftperf{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    let ctx = Ctx {
        reg: reg.clone(),
        exe,
        weft: weft.clone(),
        tag,
        dir: dir.clone(),
        stop: stop.clone(),
    };
    let mut report = Report {
        meta: Meta {
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            duration_s: args.duration,
            streams: args.streams,
            udp_payload: args.udp_size,
            echo_interval_us: args.echo_interval_us,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            weft: weft.map(|w| w.display().to_string()),
        },
        subjects: Vec::new(),
        skipped,
    };
    let mp = MultiProgress::new();
    for (i, s) in subjects.iter().enumerate() {
        let idx = i + 1;
        let mut result = SubjectResult {
            name: s.name.clone(),
            kind: s.kind.name().into(),
            ..SubjectResult::default()
        };
        let outcome = measure_subject(&ctx, &args, &mp, idx, s, &mut result);
        if !args.keep {
            reg.lock().clean();
        }
        if stop.load(Ordering::SeqCst) {
            // the Ctrl-C handler is removing everything and ends the process with 130
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        match outcome {
            Ok(Ok(())) => report.subjects.push(result),
            Ok(Err(reason)) => {
                eprintln!("skipping {}: {reason}", s.name);
                report.skipped.push(Skipped {
                    name: s.name.clone(),
                    reason,
                });
            }
            Err(e) => {
                eprintln!("{}: {e:#}", s.name);
                result.error = Some(format!("{e:#}"));
                report.subjects.push(result);
            }
        }
    }

    if report.subjects.is_empty() {
        println!("\nno subject ran");
        for k in &report.skipped {
            println!("skipped {}: {}", k.name, k.reason);
        }
    } else {
        println!("\n{}", report.table());
    }
    for s in &report.subjects {
        for n in &s.notes {
            println!("{}: {n}", s.name);
        }
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report.to_json())? + "\n")
            .with_context(|| p.display().to_string())?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.svg {
        std::fs::write(p, report.svg()).with_context(|| p.display().to_string())?;
        println!("wrote {}", p.display());
    }
    if args.keep {
        println!(
            "--keep: left in place (press Ctrl-C to remove):\n{}",
            reg.lock().describe()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    reg.lock().clean();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if report.subjects.iter().any(|s| s.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Setup and the five measurements of one subject, filling `result` as they finish.
/// `Ok(Err(reason))`: the subject cannot run on this machine.
fn measure_subject(
    ctx: &Ctx,
    args: &RunArgs,
    mp: &MultiProgress,
    idx: usize,
    s: &Subject,
    result: &mut SubjectResult,
) -> Result<Result<(), String>> {
    let spinner = mp.add(ProgressBar::new_spinner());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>18} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_prefix(s.name.clone());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let say = |m: &str| {
        spinner.set_message(format!("setup: {m}"));
        if spinner.is_hidden() {
            eprintln!("{}: setup: {m}", s.name);
        }
    };
    let started = Instant::now();
    let ends = match subjects::setup(ctx, idx, s, &say) {
        Ok(Ok(e)) => e,
        Ok(Err(reason)) => {
            spinner.finish_and_clear();
            return Ok(Err(reason));
        }
        Err(e) => {
            spinner.finish_with_message(format!("setup failed: {e:#}"));
            return Err(e.context("setup"));
        }
    };
    result.notes = ends.notes.clone();
    say("starting the sink/echo server");
    let server = ctx.reg.spawn(
        "server",
        Command::new("ip")
            .args(["netns", "exec", &ends.server_ns])
            .arg(&ctx.exe)
            .arg("__server"),
        None,
    )?;
    let line = ctx.reg.first_line(server, Duration::from_secs(10))?;
    if line.trim() != "ready" {
        let out = ctx.reg.finish(server)?;
        bail!(
            "the server did not start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    spinner.finish_with_message(format!(
        "ready after {:.1} s ({} → {})",
        started.elapsed().as_secs_f64(),
        ends.client_ns,
        ends.target
    ));

    let d = args.duration;
    let to = ends.target.to_string();
    let echo_args = |dur: f64| {
        vec![
            "__echo".to_string(),
            to.clone(),
            "--duration".into(),
            dur.to_string(),
            "--interval-us".into(),
            args.echo_interval_us.to_string(),
        ]
    };
    let tcp_args = |streams: u32, dur: f64| {
        vec![
            "__tcp".to_string(),
            to.clone(),
            "--streams".into(),
            streams.to_string(),
            "--duration".into(),
            dur.to_string(),
        ]
    };

    let bar = |what: &str| {
        let b = mp.add(ProgressBar::new((d * 1000.0) as u64));
        b.set_style(
            ProgressStyle::with_template("  {prefix:>18} {msg:<24} [{bar:30}] {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_prefix(s.name.clone());
        b.set_message(what.to_string());
        b
    };
    let done = |b: &ProgressBar, what: String| {
        if b.is_hidden() {
            eprintln!("{}: {what}", s.name);
        }
        b.finish_with_message(what);
    };

    // 1. idle latency (its warm-up also waits out ARP and the tunnel's first contact)
    let b = bar("RTT idle");
    let l: Latency = client(ctx, &ends, &b, d, &echo_args(d))?;
    done(
        &b,
        format!("RTT idle p50 {:.1} µs p99 {:.1} µs", l.p50_us, l.p99_us),
    );
    result.latency_idle = Some(l);

    // 2. one TCP stream
    let b = bar("TCP 1 stream");
    let t: Throughput = client(ctx, &ends, &b, d, &tcp_args(1, d))?;
    done(&b, format!("TCP 1 stream {:.2} Gbit/s", t.gbit_s));
    result.tcp_1 = Some(t);

    // 3. N TCP streams
    if args.streams > 1 {
        let b = bar(&format!("TCP {} streams", args.streams));
        let t: Throughput = client(ctx, &ends, &b, d, &tcp_args(args.streams, d))?;
        done(
            &b,
            format!("TCP {} streams {:.2} Gbit/s", args.streams, t.gbit_s),
        );
        result.tcp_n = Some(t);
    }

    // 4. UDP at the sender's maximum rate
    let b = bar(&format!("UDP {} B", args.udp_size));
    let u: UdpResult = client(
        ctx,
        &ends,
        &b,
        d,
        &[
            "__udp".to_string(),
            to.clone(),
            "--size".into(),
            args.udp_size.to_string(),
            "--duration".into(),
            d.to_string(),
        ],
    )?;
    done(
        &b,
        format!(
            "UDP {:.0} Mbit/s {:.1} kpps loss {:.2} %",
            u.received_mbit_s,
            u.received_pps / 1000.0,
            u.loss * 100.0
        ),
    );
    result.udp = Some(u);

    // 5. latency while one TCP stream runs (it starts 0.5 s earlier and ends 0.5 s later)
    let b = bar("RTT under TCP load");
    let tcp_pid = spawn_client(ctx, &ends, &tcp_args(1, d + 1.0))?;
    std::thread::sleep(Duration::from_millis(500));
    let echo: Result<Latency> = client(ctx, &ends, &b, d, &echo_args(d));
    let load: Result<Throughput> = wait_client(ctx, tcp_pid, None, 0.0, d + 1.0);
    let (mut l, t) = (echo?, load?);
    l.load_gbit_s = Some(t.gbit_s);
    done(
        &b,
        format!(
            "RTT loaded p50 {:.1} µs p99 {:.1} µs ({:.2} Gbit/s)",
            l.p50_us, l.p99_us, t.gbit_s
        ),
    );
    result.latency_load = Some(l);
    ctx.reg.stop(server);
    Ok(Ok(()))
}

fn spawn_client(ctx: &Ctx, ends: &Endpoints, args: &[String]) -> Result<u32> {
    ctx.reg.spawn(
        &args[0],
        Command::new("ip")
            .args(["netns", "exec", &ends.client_ns])
            .arg(&ctx.exe)
            .args(args),
        None,
    )
}

/// Runs a client subcommand in the client namespace and parses its JSON line.
fn client<T: DeserializeOwned>(
    ctx: &Ctx,
    ends: &Endpoints,
    bar: &ProgressBar,
    duration: f64,
    args: &[String],
) -> Result<T> {
    let pid = spawn_client(ctx, ends, args)?;
    wait_client(ctx, pid, Some(bar), duration, duration)
}

/// Waits for client `pid` (moving `bar` along `duration`), allowing `limit` + 60 s (warm-up,
/// connection set-up, draining).
fn wait_client<T: DeserializeOwned>(
    ctx: &Ctx,
    pid: u32,
    bar: Option<&ProgressBar>,
    duration: f64,
    limit: f64,
) -> Result<T> {
    let start = Instant::now();
    while !ctx.reg.exited(pid)? {
        if ctx.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if start.elapsed() > secs(limit + 60.0) {
            ctx.reg.stop(pid);
            bail!("the measurement did not end within {:.0} s", limit + 60.0);
        }
        if let Some(b) = bar {
            b.set_position((start.elapsed().as_secs_f64().min(duration) * 1000.0) as u64);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = ctx.reg.finish(pid)?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).with_context(|| format!("client output {stdout:?}"))
}
