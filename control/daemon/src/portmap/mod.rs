//! Port mapping of the tertiary UDP port on the local gateway (UPnP IGD, PCP, NAT-PMP), so that
//! peers behind other NATs can reach this node directly; the mapped external address is then
//! advertised like a local interface address (PUSH_DIRECT_PATHS).
//! spec: vl1.md §0.1 ("tertiary port"), §5.8, §8.12; service.md §3.1 `portMappingEnabled`
//!
//! A tokio task ([`spawn`]) owns the mapping: it looks for a gateway (PCP/NAT-PMP to the IPv4
//! default gateway, then UPnP through SSDP), maps the port with a lease, renews it at half its
//! life, retries with exponential backoff when there is no gateway or the gateway refuses, and
//! removes the mapping when told to stop. It reports every change of [`Status`] over a channel;
//! it logs one line per change of state (never one per retry).

mod backoff;
mod gateway;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_wire::inet::IpPort;

use backoff::{Backoff, renew_after};
pub(crate) use gateway::Targets;
use gateway::{Failure, Lease};

/// Requested lease, seconds (ZeroTier One's mapper asks for an hour as well).
pub(crate) const LEASE_SECS: u32 = 3600;
/// First retry after a failed round; doubled after each further failure…
const RETRY_MIN: Duration = Duration::from_secs(15);
/// …up to this.
const RETRY_MAX: Duration = Duration::from_secs(600);
/// How long one discovery may take per protocol.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the mapping's removal may delay shutdown.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The protocol a mapping was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Upnp,
    NatPmp,
    Pcp,
}

impl Protocol {
    /// The name `/status` uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Upnp => "upnp",
            Protocol::NatPmp => "natpmp",
            Protocol::Pcp => "pcp",
        }
    }
}

/// Where the mapper stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Port mapping is off (`portMappingEnabled: false`).
    Disabled,
    /// Looking for a gateway (first round, or after a mapping was lost).
    Searching,
    /// Mapped; see [`Status::protocol`] and [`Status::external`].
    Mapped,
    /// Nothing answered; retrying with backoff.
    NoGateway,
    /// A gateway answered but refused; retrying with backoff.
    Refused(String),
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Disabled => f.write_str("disabled"),
            State::Searching => f.write_str("searching"),
            State::Mapped => f.write_str("mapped"),
            State::NoGateway => f.write_str("no gateway"),
            State::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// What the mapper reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) state: State,
    pub(crate) protocol: Option<Protocol>,
    /// The mapped external address (only while mapped).
    pub(crate) external: Option<SocketAddr>,
    /// When the lease runs out (only while mapped).
    pub(crate) expires: Option<Instant>,
}

impl Status {
    fn plain(state: State) -> Status {
        Status {
            state,
            protocol: None,
            external: None,
            expires: None,
        }
    }

    /// The state before the first report.
    pub(crate) fn searching() -> Status {
        Status::plain(State::Searching)
    }

    /// The state when port mapping is off.
    pub(crate) fn disabled() -> Status {
        Status::plain(State::Disabled)
    }

    /// The `portMapping` object of `/status` (a weft extension).
    pub(crate) fn to_json(&self, now: Instant) -> Value {
        let left = self
            .expires
            .map_or(0, |e| e.saturating_duration_since(now).as_secs());
        json!({
            "enabled": self.state != State::Disabled,
            "protocol": self.protocol.map(Protocol::as_str),
            "externalAddress": self.external.map(|a| IpPort(a).to_string()),
            "leaseSecondsLeft": left,
            "state": self.state.to_string(),
        })
    }
}

/// What the mapper needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The local UDP port to map (the tertiary port).
    pub(crate) port: NonZeroU16,
    pub(crate) targets: Targets,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
}

impl Config {
    /// Restricts the protocols tried to `names` (`upnp`, `pcp`, `natpmp`), from local.conf's
    /// `settings.portMappingProtocols` (weft extension; all three by default).
    pub(crate) fn with_protocols(mut self, names: &[String]) -> Config {
        let has = |n: &str| names.iter().any(|x| x.eq_ignore_ascii_case(n));
        self.targets.upnp = has("upnp");
        self.targets.pmp = has("pcp");
        self.targets.natpmp = has("natpmp");
        self
    }

    /// The production settings for `port`: UPnP on the LAN, PCP/NAT-PMP to the default gateway.
    pub(crate) fn new(port: NonZeroU16) -> Config {
        Config {
            port,
            targets: Targets {
                ssdp: gateway::SSDP_GROUP,
                pmp_gateway: None,
                timeout: DISCOVERY_TIMEOUT,
                lease_secs: LEASE_SECS,
                upnp: true,
                pmp: true,
                natpmp: true,
            },
            retry_min: RETRY_MIN,
            retry_max: RETRY_MAX,
        }
    }
}

/// The running mapper: its reports, and the way to stop it.
#[derive(Debug)]
pub(crate) struct PortMapper {
    /// Every change of status, in order.
    pub(crate) reports: mpsc::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PortMapper {
    /// Stops the task, which removes its mapping from the gateway (bounded by a short timeout,
    /// so a gateway gone silent cannot hold up shutdown).
    pub(crate) async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // the task bounds the removal itself; this only guards against surprises
            let _ = tokio::time::timeout(REMOVAL_TIMEOUT * 2, task).await;
        }
    }
}

/// Starts the mapper task.
pub(crate) fn spawn(config: Config) -> PortMapper {
    let (tx, reports) = mpsc::channel(16);
    let (stop_tx, stop) = oneshot::channel();
    let task = tokio::spawn(run(config, tx, stop));
    PortMapper {
        reports,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// Reports and logs status changes; the log line only when the state itself changes (a renewed
/// lease is reported, not logged).
struct Reporter {
    tx: mpsc::Sender<Status>,
    last: Option<Status>,
}

impl Reporter {
    async fn report(&mut self, s: Status) {
        if self.last.as_ref() == Some(&s) {
            return;
        }
        let state_changed = self
            .last
            .as_ref()
            .is_none_or(|l| l.state != s.state || l.external != s.external);
        if state_changed {
            match (&s.protocol, &s.external) {
                (Some(p), Some(a)) => eprintln!(
                    "weft: port mapping: {} ({} {})",
                    s.state,
                    p.as_str(),
                    IpPort(*a)
                ),
                _ => eprintln!("weft: port mapping: {}", s.state),
            }
        }
        self.last = Some(s.clone());
        // the service going away ends the task at its next stop check; nothing to do here
        let _ = self.tx.send(s).await;
    }
}

/// Sleeps `d`; true if told to stop meanwhile.
async fn stopped_during(stop: &mut oneshot::Receiver<()>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop => true,
    }
}

async fn run(config: Config, tx: mpsc::Sender<Status>, mut stop: oneshot::Receiver<()>) {
    let mut reporter = Reporter { tx, last: None };
    let mut backoff = Backoff::new(config.retry_min, config.retry_max);
    reporter.report(Status::plain(State::Searching)).await;
    loop {
        let attempt = tokio::select! {
            r = gateway::map(&config.targets, config.port) => r,
            _ = &mut stop => return,
        };
        match attempt {
            Ok(lease) => {
                backoff.reset();
                if hold(&config, lease, &mut reporter, &mut stop).await {
                    return;
                }
                // lost: look again at once
                reporter.report(Status::plain(State::Searching)).await;
            }
            Err(f) => {
                let state = match f {
                    Failure::NoGateway => State::NoGateway,
                    Failure::Refused(why) => State::Refused(why),
                };
                reporter.report(Status::plain(state)).await;
                if stopped_during(&mut stop, backoff.next_delay()).await {
                    return;
                }
            }
        }
    }
}

/// Keeps `lease` renewed until told to stop (then removes it and returns true) or until a
/// renewal fails (returns false).
async fn hold(
    config: &Config,
    mut lease: Lease,
    reporter: &mut Reporter,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    loop {
        let granted = Instant::now();
        reporter
            .report(Status {
                state: State::Mapped,
                protocol: Some(lease.protocol),
                external: Some(lease.external),
                expires: Some(granted + Duration::from_secs(u64::from(lease.lifetime))),
            })
            .await;
        if stopped_during(stop, renew_after(lease.lifetime)).await {
            let external = lease.external;
            match tokio::time::timeout(REMOVAL_TIMEOUT, lease.remove()).await {
                Ok(Ok(())) => eprintln!("weft: port mapping: removed {}", IpPort(external)),
                Ok(Err(Failure::Refused(why))) => {
                    eprintln!("weft: port mapping: removing {}: {why}", IpPort(external));
                }
                _ => eprintln!(
                    "weft: port mapping: no answer removing {}",
                    IpPort(external)
                ),
            }
            return true;
        }
        let renewed = tokio::select! {
            r = lease.renew(config.targets.lease_secs) => r,
            _ = &mut *stop => return true,
        };
        if let Err(f) = renewed {
            let state = match f {
                Failure::NoGateway => State::NoGateway,
                Failure::Refused(why) => State::Refused(why),
            };
            reporter.report(Status::plain(state)).await;
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket as StdUdpSocket};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A "gateway" on a loopback address that receives SSDP and PCP/NAT-PMP requests and never
    /// answers; counts what it got.
    struct Silent {
        ip: Ipv4Addr,
        ssdp: Arc<AtomicUsize>,
        pmp: Arc<AtomicUsize>,
    }

    fn swallow(addr: SocketAddr, count: Arc<AtomicUsize>) -> bool {
        let Ok(s) = StdUdpSocket::bind(addr) else {
            return false;
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while s.recv_from(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        true
    }

    fn silent_gateway() -> Silent {
        // a random loopback address, so the fixed PCP port (5351) is free
        for _ in 0..50 {
            let r: [u8; 4] = rand_core::RngCore::next_u32(&mut rand_core::OsRng).to_be_bytes();
            let ip = Ipv4Addr::new(127, r[0] | 1, r[1], r[2].max(2));
            let (ssdp, pmp) = (Arc::default(), Arc::default());
            if swallow(SocketAddr::new(ip.into(), 1900), Arc::clone(&ssdp))
                && swallow(SocketAddr::new(ip.into(), 5351), Arc::clone(&pmp))
            {
                return Silent { ip, ssdp, pmp };
            }
        }
        panic!("no free loopback address for the fake gateway");
    }

    #[tokio::test]
    async fn silent_gateway_means_no_gateway_with_backoff_and_no_spam() {
        let gw = silent_gateway();
        let mut config = Config::new(NonZeroU16::new(40_000).expect("non-zero"));
        config.targets.ssdp = SocketAddr::new(gw.ip.into(), 1900);
        config.targets.pmp_gateway = Some(gw.ip);
        config.targets.timeout = Duration::from_millis(300);
        config.retry_min = Duration::from_millis(200);
        config.retry_max = Duration::from_millis(800);
        let mut m = spawn(config);
        let first = m.reports.recv().await.expect("a first report");
        assert_eq!(first.state, State::Searching);
        let second = tokio::time::timeout(Duration::from_secs(10), m.reports.recv())
            .await
            .expect("a report within 10 s")
            .expect("the task is alive");
        assert_eq!(second.state, State::NoGateway);
        assert_eq!(second.to_json(Instant::now())["state"], "no gateway");
        assert_eq!(second.to_json(Instant::now())["protocol"], Value::Null);
        // Rounds take ~0.6 s (two silent protocols) and wait 0.2, 0.4, 0.8, 0.8 … s between:
        // over 5 s about 4–6 rounds, and not one more report (the state stays "no gateway").
        let quiet = tokio::time::timeout(Duration::from_secs(5), m.reports.recv()).await;
        assert!(quiet.is_err(), "unexpected report: {quiet:?}");
        let (ssdp, pmp) = (
            gw.ssdp.load(Ordering::SeqCst),
            gw.pmp.load(Ordering::SeqCst),
        );
        // each round: at least one M-SEARCH and three PCP sends (first + 2 retries)
        let rounds = pmp / 3;
        assert!(
            (3..=8).contains(&rounds) && ssdp >= rounds,
            "rounds {rounds} (pmp datagrams {pmp}, ssdp {ssdp})"
        );
        let started = Instant::now();
        m.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(1), "slow shutdown");
        // the task is gone: its sender was dropped
        assert!(m.reports.recv().await.is_none());
    }

    #[test]
    fn status_json() {
        let now = Instant::now();
        let s = Status {
            state: State::Mapped,
            protocol: Some(Protocol::Upnp),
            external: Some("203.0.113.7:40000".parse().expect("addr")),
            expires: Some(now + Duration::from_secs(3599)),
        };
        assert_eq!(
            s.to_json(now),
            json!({"enabled": true, "protocol": "upnp", "externalAddress": "203.0.113.7/40000",
                   "leaseSecondsLeft": 3599, "state": "mapped"})
        );
        let d = Status::disabled().to_json(now);
        assert_eq!(d["enabled"], false);
        assert_eq!(d["state"], "disabled");
        assert_eq!(
            Status::plain(State::Refused("NotAuthorized".into())).to_json(now)["state"],
            "refused: NotAuthorized"
        );
    }
}
