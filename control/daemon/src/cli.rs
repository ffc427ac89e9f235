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
        ClientCommand::Join { network_id } | ClientCommand::Leave { network_id } => {
            if network_id.len() != 16 || u64::from_str_radix(network_id, 16).is_err() {
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
        ClientCommand::Orbit { .. } => println!("200 orbit OK"),
        ClientCommand::Deorbit { .. } => println!("200 deorbit OK"),
        ClientCommand::Ping { .. } => println!("200 ping OK"),
        ClientCommand::Join { .. } => println!("200 join OK"),
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
