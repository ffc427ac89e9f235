//! Client commands that talk to a running daemon through the local API, with zerotier-cli's
//! output formats: `info`, `listpeers`, `peers`, `listnetworks`, `join`, `leave`, `listmoons`,
//! `orbit`, `deorbit`, `ping`.
//! spec: service.md §6

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::Value;

/// Options shared by client commands (zerotier-cli's switches).
#[derive(Debug, Args)]
pub(crate) struct ClientOpts {
    /// Home folder used to find the port and token (default: $WEFT_HOME, else /var/lib/weft).
    #[arg(short = 'D', long = "home")]
    home: Option<PathBuf>,
    /// API port (default: read from `<home>/zerotier-one.port`).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Auth token (default: read from `<home>/authtoken.secret`).
    #[arg(short = 'T', long = "token")]
    token: Option<String>,
    /// API host.
    #[arg(short = 'H', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Raw JSON output.
    #[arg(short = 'j', long = "json")]
    json: bool,
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Node address, version and online state.
    Info,
    /// Peers, one line each (zerotier-cli listpeers).
    Listpeers,
    /// Peers as a table (zerotier-cli peers).
    Peers,
    /// Orbited moons as JSON.
    Listmoons,
    /// Orbit a moon: world id and seed address (hex).
    Orbit {
        /// World id (hex).
        world_id: String,
        /// Seed: address of one of the moon's roots (hex).
        seed: String,
    },
    /// Stop orbiting a moon.
    Deorbit {
        /// World id (hex).
        world_id: String,
    },
    /// Joined networks, one line each (zerotier-cli listnetworks).
    Listnetworks,
    /// A human view: the node, its networks, and per peer whether traffic goes direct or
    /// through a relay, and why.
    Status,
    /// Set a local network setting: allowManaged, allowGlobal, allowDefault or allowDNS.
    Set {
        /// Network id (16 hex digits).
        network_id: String,
        /// `<key>=<value>` (true iff the value starts with `t` or `1`).
        setting: String,
    },
    /// Print one property of a joined network (or `ip`, `ip4`, `ip6`, `ip6plane`, `ip6prefix`).
    Get {
        /// Network id (16 hex digits).
        network_id: String,
        /// Property name.
        property: String,
    },
    /// Write status, networks, peers, local.conf and interfaces to ./zerotier_dump.txt.
    Dump,
    /// Join a network.
    Join {
        /// Network id (16 hex digits).
        network_id: String,
    },
    /// Leave a network.
    Leave {
        /// Network id (16 hex digits).
        network_id: String,
    },
    /// Bonded peers, one line each (zerotier-cli listbonds).
    Listbonds,
    /// Multipath bonds: `bond list`, `bond <addr10> show`, `bond <addr10> rotate`,
    /// `bond setmtu <mtu> <ifname> <ip>`.
    Bond {
        /// `list`; a peer address followed by `show` or `rotate`; or `setmtu` followed by the
        /// MTU, the interface and an address (the interface's own: all its paths; a peer's: the
        /// paths to it).
        #[arg(num_args = 1..=4)]
        args: Vec<String>,
    },
    /// Send traffic to a peer (weft: a USER_MESSAGE through the normal send path).
    Ping {
        /// Peer address (10 hex digits).
        address: String,
    },
}

/// A client of the local API (shared with `weft controller`).
pub(crate) struct Client {
    base: String,
    token: String,
    pub(crate) json: bool,
}

/// An API answer: the JSON of a 200, or the exit code after the failure was printed.
pub(crate) enum Reply {
    Ok(Value),
    Failed(ExitCode),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// JSON with 1-space indentation, as zerotier-cli prints it.
pub(crate) fn pretty(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8(out).unwrap_or_default()
}

impl Client {
    /// A client for the daemon the options point at (port and token from the home folder
    /// unless given); prints why and returns exit code 2 when they cannot be found.
    pub(crate) fn new(o: &ClientOpts) -> Result<Client, ExitCode> {
        let home = crate::service::home_dir(o.home.clone());
        let port = match o.port {
            Some(p) => p,
            None => match std::fs::read_to_string(home.join("zerotier-one.port"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                Some(p) => p,
                None => {
                    eprintln!(
                        "weft: missing port and zerotier-one.port not found in {}",
                        home.display()
                    );
                    return Err(ExitCode::from(2));
                }
            },
        };
        let token = match &o.token {
            Some(t) => t.clone(),
            None => match std::fs::read_to_string(home.join("authtoken.secret")) {
                Ok(t) => t.trim().to_string(),
                Err(_) => {
                    eprintln!(
                        "weft: authtoken.secret not found or readable in {} (try again as root)",
                        home.display()
                    );
                    return Err(ExitCode::from(2));
                }
            },
        };
        let host = if o.host.contains(':') {
            format!("[{}]", o.host)
        } else {
            o.host.clone()
        };
        Ok(Client {
            base: format!("http://{host}:{port}"),
            token,
            json: o.json,
        })
    }

    /// One request; a non-200 answer is printed as `<code> <command> <body>` (zerotier-cli).
    pub(crate) fn call(
        &self,
        command: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let url = format!("{}{}", self.base, path);
        let resp = match (method, body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("X-ZT1-Auth", &self.token)
                .send_json(b),
            ("POST", None) => agent
                .post(&url)
                .header("X-ZT1-Auth", &self.token)
                .send_empty(),
            ("DELETE", _) => agent.delete(&url).header("X-ZT1-Auth", &self.token).call(),
            _ => agent.get(&url).header("X-ZT1-Auth", &self.token).call(),
        };
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                println!("Error connecting to the weft service: {e}\n");
                println!(
                    "Please check that the service is running and that TCP port {} can be contacted via 127.0.0.1.",
                    self.base.rsplit(':').next().unwrap_or("9993")
                );
                return Reply::Failed(ExitCode::FAILURE);
            }
        };
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if code != 200 {
            println!("{code} {command} {text}");
            return Reply::Failed(ExitCode::FAILURE);
        }
        match serde_json::from_str(&text) {
            Ok(v) => Reply::Ok(v),
            Err(e) => {
                println!("{code} {command} invalid JSON response ({e})");
                Reply::Failed(ExitCode::FAILURE)
            }
        }
    }
}

fn peer_path(p: &Value, now: i64) -> String {
    let Some(path) = p["paths"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["preferred"] == true))
    else {
        return "-".to_string();
    };
    let age = |k: &str| path[k].as_i64().filter(|t| *t > 0).map_or(-1, |t| now - t);
    format!(
        "{};{};{}",
        path["address"].as_str().unwrap_or("-"),
        age("lastSend"),
        age("lastReceive")
    )
}

fn version(p: &Value) -> String {
    match p["version"].as_str() {
        Some(v) if !v.starts_with('-') => v.to_string(),
        _ => "-".to_string(),
    }
}

/// `listbonds` / `bond list`: bonded peers with policy and alive/total links.
/// spec: service.md §5 (listbonds)
fn bond_list(peers: &Value) -> String {
    let mut out = String::from("    <peer>                        <bondtype>     <links>\n");
    let mut any = false;
    for p in peers.as_array().into_iter().flatten() {
        if p["isBonded"] != true {
            continue;
        }
        any = true;
        out.push_str(&format!(
            "{:>10}  {:>32}         {}/{}\n",
            p["address"].as_str().unwrap_or("-"),
            p["bondingPolicyStr"].as_str().unwrap_or("-"),
            p["numAliveLinks"].as_u64().unwrap_or(0),
            p["numTotalLinks"].as_u64().unwrap_or(0),
        ));
    }
    if !any {
        out.push_str("      NONE\t\t\t\tNONE\t    NONE       NONE\n");
    }
    out
}

/// `bond <addr10> show`: the bond's settings, then its links (state and quality).
/// spec: service.md §5 (bond show)
fn bond_show(p: &Value) -> String {
    let n = |k: &str| p[k].as_i64().unwrap_or(-1);
    let mut out = String::new();
    out.push_str(&format!(
        "Peer                   : {}\n",
        p["address"].as_str().unwrap_or("-")
    ));
    out.push_str(&format!(
        "Bond                   : {}\n",
        p["bondingPolicyStr"].as_str().unwrap_or("-")
    ));
    out.push_str(&format!(
        "Link Select Method     : {}\n",
        p["linkSelectMethod"].as_str().unwrap_or("-")
    ));
    out.push_str(&format!(
        "Links                  : {}/{}\n",
        n("numAliveLinks"),
        n("numTotalLinks")
    ));
    out.push_str(&format!(
        "Failover Interval (ms) : {}\n",
        n("failoverInterval")
    ));
    out.push_str(&format!("Up Delay (ms)          : {}\n", n("upDelay")));
    out.push_str(&format!("Down Delay (ms)        : {}\n", n("downDelay")));
    out.push_str(&format!(
        "Packets Per Link       : {}\n",
        n("packetsPerLink")
    ));
    let dashes = "-".repeat(120);
    let paths: Vec<&Value> = p["bondPaths"].as_array().into_iter().flatten().collect();
    out.push_str(&format!(
        "\n{:>5} {:<15} {:<45} {:<10} {:>8} {:>8} {:>10}\n{dashes}\n",
        "idx", "interface", "path", "state", "bonded", "eligible", "flows"
    ));
    for (i, x) in paths.iter().enumerate() {
        out.push_str(&format!(
            "{:>5} {:<15} {:<45} {:<10} {:>8} {:>8} {:>10}\n",
            i,
            x["ifname"].as_str().unwrap_or(""),
            x["address"].as_str().unwrap_or("-"),
            x["state"].as_str().unwrap_or("-"),
            x["bonded"] == true,
            x["eligible"] == true,
            x["assignedFlowCount"].as_u64().unwrap_or(0),
        ));
    }
    out.push_str(&format!(
        "\n{:>5} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n{dashes}\n",
        "idx", "lat (ms)", "pdv (ms)", "loss", "error", "quality", "packets"
    ));
    for (i, x) in paths.iter().enumerate() {
        let f = |k: &str| x[k].as_f64().unwrap_or(-1.0);
        out.push_str(&format!(
            "{:>5} {:>12.3} {:>12.3} {:>12.4} {:>12.4} {:>12.4} {:>12}\n",
            i,
            f("latencyMean"),
            f("latencyVariance"),
            f("packetLossRatio"),
            f("packetErrorRatio"),
            f("relativeQuality"),
            x["packets"].as_u64().unwrap_or(0),
        ));
    }
    out
}

/// Runs a client command.
pub(crate) fn run(opts: ClientOpts, cmd: ClientCommand) -> Result<ExitCode> {
    let c = match Client::new(&opts) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let now = now_ms();
    let reply = match &cmd {
        ClientCommand::Info => c.call("info", "GET", "/status", None),
        ClientCommand::Listpeers => c.call("listpeers", "GET", "/peer", None),
        ClientCommand::Peers => c.call("peers", "GET", "/peer", None),
        ClientCommand::Listmoons => c.call("listmoons", "GET", "/moon", None),
        ClientCommand::Listbonds => c.call("listbonds", "GET", "/peer", None),
        ClientCommand::Bond { args } => match (args.first().map(String::as_str), args.get(1)) {
            (Some("list"), None) => c.call("listbonds", "GET", "/peer", None),
            (Some("setmtu"), Some(mtu)) if args.len() == 4 => {
                // spec: service.md §5 — `<code> Failed to set MTU: <body>` on failure
                let path = format!("/bond/setmtu/{mtu}/{}/{}", args[2], args[3]);
                c.call("Failed to set MTU:", "POST", &path, None)
            }
            (Some(a), Some(op)) if a.len() == 10 && u64::from_str_radix(a, 16).is_ok() => {
                match op.as_str() {
                    "show" => c.call("bond", "GET", &format!("/bond/show/{a}"), None),
                    "rotate" => c.call("bond", "POST", &format!("/bond/rotate/{a}"), None),
                    _ => {
                        println!("invalid command");
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            _ => {
                println!("invalid command");
                return Ok(ExitCode::from(2));
            }
        },
        ClientCommand::Orbit { world_id, seed } => {
            let (Ok(id), Ok(s)) = (
                u64::from_str_radix(world_id, 16),
                u64::from_str_radix(seed, 16),
            ) else {
                return Ok(ExitCode::SUCCESS);
            };
            if id == 0 || s == 0 {
                return Ok(ExitCode::SUCCESS);
            }
            c.call(
                "orbit",
                "POST",
                &format!("/moon/{id:016x}"),
                Some(serde_json::json!({ "seed": format!("{s:010x}") })),
            )
        }
        ClientCommand::Deorbit { world_id } => match u64::from_str_radix(world_id, 16) {
            Ok(id) => c.call("deorbit", "DELETE", &format!("/moon/{id:016x}"), None),
            Err(_) => {
                eprintln!("invalid world id {world_id:?}");
                return Ok(ExitCode::from(2));
            }
        },
        ClientCommand::Ping { address } => {
            c.call("ping", "POST", &format!("/unstable/ping/{address}"), None)
        }
        ClientCommand::Listnetworks => c.call("listnetworks", "GET", "/network", None),
        ClientCommand::Status => return status(&c, now),
        ClientCommand::Set {
            network_id,
            setting,
        } => return set(&c, network_id, setting),
        ClientCommand::Get {
            network_id,
            property,
        } => return get(&c, network_id, property),
        ClientCommand::Dump => return dump(&c),
        ClientCommand::Join { network_id } | ClientCommand::Leave { network_id } => {
            if !valid_nwid(network_id) {
                println!("invalid network id");
                return Ok(ExitCode::from(2));
            }
            if matches!(cmd, ClientCommand::Join { .. }) {
                c.call(
                    "join",
                    "POST",
                    &format!("/network/{network_id}"),
                    Some(serde_json::json!({})),
                )
            } else {
                c.call("leave", "DELETE", &format!("/network/{network_id}"), None)
            }
        }
    };
    let v = match reply {
        Reply::Ok(v) => v,
        Reply::Failed(code) => return Ok(code),
    };
    if c.json && !matches!(cmd, ClientCommand::Listmoons) {
        println!("{}", pretty(&v));
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        ClientCommand::Info => {
            let state = if v["tcpFallbackActive"] == true {
                "TUNNELED"
            } else if v["online"] == true {
                "ONLINE"
            } else {
                "OFFLINE"
            };
            println!(
                "200 info {} {} {state}",
                v["address"].as_str().unwrap_or("-"),
                v["version"].as_str().unwrap_or("-")
            );
        }
        ClientCommand::Listpeers => {
            println!("200 listpeers <ztaddr> <path> <latency> <version> <role>");
            for p in v.as_array().into_iter().flatten() {
                println!(
                    "200 listpeers {} {} {} {} {}",
                    p["address"].as_str().unwrap_or("-"),
                    peer_path(p, now),
                    p["latency"].as_i64().unwrap_or(-1),
                    version(p),
                    p["role"].as_str().unwrap_or("-")
                );
            }
        }
        ClientCommand::Peers => {
            println!("200 peers");
            println!("<ztaddr>   <ver>  <role> <lat> <link>   <lastTX> <lastRX> <path>");
            for p in v.as_array().into_iter().flatten() {
                let preferred = p["paths"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["preferred"] == true));
                let link = match preferred {
                    Some(path) => {
                        let age =
                            |k: &str| path[k].as_i64().filter(|t| *t > 0).map_or(-1, |t| now - t);
                        format!(
                            "DIRECT   {:<8} {:<8} {}",
                            age("lastSend"),
                            age("lastReceive"),
                            path["address"].as_str().unwrap_or("-")
                        )
                    }
                    None => "RELAY".to_string(),
                };
                println!(
                    "{} {:<6} {:<6} {:>5} {link}",
                    p["address"].as_str().unwrap_or("-"),
                    version(p),
                    p["role"].as_str().unwrap_or("-"),
                    p["latency"].as_i64().unwrap_or(-1)
                );
            }
        }
        ClientCommand::Listmoons => println!("{}", pretty(&v)),
        ClientCommand::Listbonds => print!("{}", bond_list(&v)),
        ClientCommand::Bond { args } => match args.get(1).map(String::as_str) {
            _ if args[0] == "setmtu" => println!("200 setmtu OK"),
            Some("show") => print!("{}", bond_show(&v)),
            Some(_) => println!("200 rotate OK"),
            None => print!("{}", bond_list(&v)),
        },
        ClientCommand::Orbit { .. } => println!("200 orbit OK"),
        ClientCommand::Deorbit { .. } => println!("200 deorbit OK"),
        ClientCommand::Ping { .. } => println!("200 ping OK"),
        ClientCommand::Join { .. } => println!("200 join OK"),
        ClientCommand::Status
        | ClientCommand::Set { .. }
        | ClientCommand::Get { .. }
        | ClientCommand::Dump => {}
        ClientCommand::Leave { .. } => println!("200 leave OK"),
        ClientCommand::Listnetworks => {
            println!(
                "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>"
            );
            for n in v.as_array().into_iter().flatten() {
                let ips: Vec<&str> = n["assignedAddresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "200 listnetworks {} {} {} {} {} {} {}",
                    n["nwid"].as_str().unwrap_or("-"),
                    n["name"].as_str().unwrap_or(""),
                    n["mac"].as_str().unwrap_or("-"),
                    n["status"].as_str().unwrap_or("-"),
                    n["type"].as_str().unwrap_or("-"),
                    n["portDeviceName"].as_str().unwrap_or("-"),
                    if ips.is_empty() {
                        "-".to_string()
                    } else {
                        ips.join(",")
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A network id as the commands take it: exactly 16 hex digits.
pub(crate) fn valid_nwid(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `set <nwid> <key>=<value>`: only the four local settings; prints the raw response.
/// spec: service.md §6.2
fn set(c: &Client, nwid: &str, setting: &str) -> Result<ExitCode> {
    if !valid_nwid(nwid) {
        eprintln!("invalid format: must be a 16-digit (network) ID");
        return Ok(ExitCode::from(2));
    }
    let Some((key, value)) = setting.split_once('=') else {
        eprintln!("usage: set <network id> <setting>=<value>");
        return Ok(ExitCode::from(2));
    };
    if !["allowManaged", "allowGlobal", "allowDefault", "allowDNS"].contains(&key) {
        return Ok(ExitCode::SUCCESS);
    }
    let on = value.starts_with('t') || value.starts_with('1');
    match c.call(
        "set",
        "POST",
        &format!("/network/{nwid}"),
        Some(serde_json::json!({ key: on })),
    ) {
        Reply::Ok(v) => {
            print!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Reply::Failed(code) => Ok(code),
    }
}

/// What `get <nwid> <prop>` prints, or `None` for an unknown property. spec: service.md §6.2
fn property(n: &Value, prop: &str) -> Option<String> {
    let ips: Vec<&str> = n["assignedAddresses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let bare = |a: &&str| a.split('/').next().unwrap_or("").to_string();
    let lines = |v: Vec<String>| Some(v.into_iter().map(|l| l + "\n").collect::<String>());
    match prop {
        "ip" => lines(ips.iter().map(bare).collect()),
        "ip4" => lines(ips.iter().filter(|a| !a.contains(':')).map(bare).collect()),
        "ip6" => lines(ips.iter().filter(|a| a.contains(':')).map(bare).collect()),
        "ip6plane" => lines(
            ips.iter()
                .filter(|a| a.starts_with("fc"))
                .map(bare)
                .collect(),
        ),
        "ip6prefix" => lines(
            ips.iter()
                .filter(|a| a.starts_with("fc"))
                .map(|a| bare(a).chars().take(24).collect())
                .collect(),
        ),
        _ => match &n[prop] {
            Value::String(s) => Some(format!("{s}\n")),
            Value::Number(x) => Some(format!("{x}\n")),
            Value::Bool(b) => Some(format!("{}\n", u8::from(*b))),
            _ => None,
        },
    }
}

fn get(c: &Client, nwid: &str, prop: &str) -> Result<ExitCode> {
    let nets = match c.call("get", "GET", "/network", None) {
        Reply::Ok(v) => v,
        Reply::Failed(code) => return Ok(code),
    };
    let Some(n) = nets
        .as_array()
        .and_then(|a| a.iter().find(|n| n["nwid"].as_str() == Some(nwid)))
    else {
        eprintln!(
            "unknown network ID, check that you have joined the network with zerotier-cli listnetworks"
        );
        return Ok(ExitCode::SUCCESS);
    };
    match property(n, prop) {
        Some(text) => print!("{text}"),
        None => println!("error, unknown property name"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Why traffic to a peer goes where it goes, in words.
fn path_story(p: &Value, now: i64) -> String {
    let preferred = p["paths"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["preferred"] == true));
    if let Some(path) = preferred {
        let lat = p["latency"].as_i64().unwrap_or(-1);
        return format!(
            "direct via {} ({} ms)",
            path["address"].as_str().unwrap_or("?"),
            if lat < 0 {
                "latency unknown".to_string()
            } else {
                lat.to_string()
            }
        );
    }
    if p["role"] != "LEAF" {
        return "no direct path: this upstream is not reachable right now".to_string();
    }
    let paths = p["paths"].as_array().map_or(0, Vec::len);
    let last = p["lastReceive"].as_i64().unwrap_or(0);
    if paths > 0 {
        "relayed: its direct paths stopped answering (hole punching will retry)".to_string()
    } else if last > 0 && now - last < 60_000 {
        "relayed: no direct path yet (waiting for an introduction and hole punching; a symmetric NAT on either side keeps it relayed)".to_string()
    } else {
        "relayed: idle, no direct path".to_string()
    }
}

/// `weft status`: the node, networks and peers in words.
fn status(c: &Client, now: i64) -> Result<ExitCode> {
    let st = match c.call("status", "GET", "/status", None) {
        Reply::Ok(v) => v,
        Reply::Failed(code) => return Ok(code),
    };
    let (Reply::Ok(nets), Reply::Ok(peers)) = (
        c.call("status", "GET", "/network", None),
        c.call("status", "GET", "/peer", None),
    ) else {
        return Ok(ExitCode::FAILURE);
    };
    if c.json {
        println!(
            "{}",
            pretty(&serde_json::json!({"status": st, "networks": nets, "peers": peers}))
        );
        return Ok(ExitCode::SUCCESS);
    }
    let online = if st["tcpFallbackActive"] == true {
        "online through the TCP fallback relay (UDP seems blocked)"
    } else if st["online"] == true {
        "online"
    } else {
        "OFFLINE (no root answered in the last 500 s)"
    };
    println!(
        "node {} (weft {}) is {online}",
        st["address"].as_str().unwrap_or("?"),
        st["version"].as_str().unwrap_or("?")
    );
    let dp = &st["dataPlane"];
    if let Some(b) = dp["backend"].as_str() {
        let n = |k: &str| dp[k].as_u64().unwrap_or(0);
        println!(
            "data plane: {} ({}), UDP back-end {b}; frames: {} in, {} out on the fast path, {} through the control plane, {} filtered",
            dp["mode"].as_str().unwrap_or("?"),
            dp["pid"]
                .as_u64()
                .map_or_else(|| "this process".to_string(), |p| format!("pid {p}")),
            n("framesIn"),
            n("framesOut"),
            n("framesHandedUp"),
            n("framesFiltered"),
        );
    }
    println!("networks:");
    let nets = nets.as_array().cloned().unwrap_or_default();
    if nets.is_empty() {
        println!("  (none joined)");
    }
    for n in &nets {
        let ips: Vec<&str> = n["assignedAddresses"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "  {} {:<16} {:<24} {} {}",
            n["nwid"].as_str().unwrap_or("?"),
            n["name"].as_str().unwrap_or(""),
            n["status"].as_str().unwrap_or("?"),
            n["portDeviceName"].as_str().unwrap_or("-"),
            if ips.is_empty() {
                "-".to_string()
            } else {
                ips.join(",")
            }
        );
    }
    println!("peers:");
    for p in peers.as_array().into_iter().flatten() {
        println!(
            "  {} {:<6} {}",
            p["address"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            path_story(p, now)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `dump`: everything a bug report needs, in ./zerotier_dump.txt. spec: service.md §6.2
fn dump(c: &Client) -> Result<ExitCode> {
    let mut out = String::new();
    for (title, path) in [
        ("status", "/status"),
        ("networks", "/network"),
        ("peers", "/peer"),
    ] {
        out.push_str(&format!("{title}\n"));
        match c.call("dump", "GET", path, None) {
            Reply::Ok(v) => out.push_str(&pretty(&v)),
            Reply::Failed(code) => return Ok(code),
        }
        out.push_str("\n\n");
    }
    if let Reply::Ok(v) = c.call("dump", "GET", "/config", None) {
        out.push_str("local.conf\n");
        out.push_str(&pretty(&v));
        out.push_str("\n\n");
    }
    if let Ok(o) = std::process::Command::new("ip").args(["addr"]).output() {
        out.push_str("interfaces\n");
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    let path = std::env::current_dir()?.join("zerotier_dump.txt");
    std::fs::write(&path, out)?;
    println!("Writing dump to: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `listbonds`: the header, one line per bonded peer, or the NONE line.
    /// spec: service.md §5, §6.3
    #[test]
    fn bond_list_format() {
        assert_eq!(
            bond_list(&serde_json::json!([{"address": "62f865ae71", "isBonded": false}])),
            "    <peer>                        <bondtype>     <links>\n      NONE\t\t\t\tNONE\t    NONE       NONE\n"
        );
        let v = serde_json::json!([{"address": "7c55a8da82", "isBonded": true,
            "bondingPolicyStr": "active-backup", "numAliveLinks": 1, "numTotalLinks": 2}]);
        assert_eq!(
            bond_list(&v).lines().nth(1),
            Some("7c55a8da82                     active-backup         1/2")
        );
    }

    fn net() -> Value {
        serde_json::json!({
            "nwid": "7c55a8da82c90312", "mtu": 2800, "bridge": false, "name": "testnet",
            "assignedAddresses": [
                "fd7c:55a8:da82:c903:1299:937c:55a8:da82/88",
                "fcfe:9cab:c87c:55a8:da82::1/40",
                "fd12:3456:789a::7c:55a8:da83/64",
                "10.147.17.38/24"
            ],
            "routes": []
        })
    }

    /// The captured outputs of service.md §6.3.
    #[test]
    fn get_properties_like_zerotier_cli() {
        let n = net();
        assert_eq!(
            property(&n, "ip").unwrap(),
            "fd7c:55a8:da82:c903:1299:937c:55a8:da82\nfcfe:9cab:c87c:55a8:da82::1\nfd12:3456:789a::7c:55a8:da83\n10.147.17.38\n"
        );
        assert_eq!(property(&n, "ip4").unwrap(), "10.147.17.38\n");
        assert_eq!(
            property(&n, "ip6plane").unwrap(),
            "fcfe:9cab:c87c:55a8:da82::1\n"
        );
        assert_eq!(
            property(&n, "ip6prefix").unwrap(),
            "fcfe:9cab:c87c:55a8:da82\n"
        );
        assert_eq!(property(&n, "mtu").unwrap(), "2800\n");
        assert_eq!(property(&n, "bridge").unwrap(), "0\n");
        assert_eq!(property(&n, "name").unwrap(), "testnet\n");
        assert!(property(&n, "bogus").is_none());
        assert!(
            property(&n, "routes").is_none(),
            "arrays are not properties"
        );
    }

    #[test]
    fn path_stories() {
        let direct = serde_json::json!({"role": "LEAF", "latency": 3,
            "paths": [{"preferred": true, "address": "10.0.0.2/9993"}]});
        assert_eq!(path_story(&direct, 0), "direct via 10.0.0.2/9993 (3 ms)");
        let relayed = serde_json::json!({"role": "LEAF", "paths": [], "lastReceive": 1000});
        assert!(path_story(&relayed, 2000).starts_with("relayed: no direct path yet"));
        let stale = serde_json::json!({"role": "LEAF", "paths": [{"preferred": false}]});
        assert!(path_story(&stale, 0).contains("stopped answering"));
        let root = serde_json::json!({"role": "PLANET", "paths": []});
        assert!(path_story(&root, 0).contains("upstream"));
    }
}
