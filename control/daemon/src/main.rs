//! The `weft` binary: a ZeroTier One 1.14 compatible node. For now it carries the identity tool
//! (`weft idtool …`) and a TCP fallback relay (`weft tcp-relay`); invoked under a name containing
//! `zerotier-idtool` it behaves as `zerotier-idtool`. spec: service.md §1, §9; vl1.md §8.13

mod cli;
mod fsutil;
mod host;
mod idtool;
mod portmap;
mod service;
mod tcp_relay;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Top-level command line of `weft`.
#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: a ZeroTier One 1.14 compatible node"
)]
struct Cli {
    /// Options of the client commands (before the command, like zerotier-cli's switches).
    #[command(flatten)]
    client: cli::ClientOpts,
    #[command(subcommand)]
    command: Command,
}

/// `weft` subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (VL1 service): joins the planet, keeps peers and paths, relays if a root.
    Daemon(service::DaemonArgs),
    /// Talk to a running node (zerotier-cli's info, listpeers, peers, listmoons, orbit, deorbit).
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Identity, signature, moon and planet tool (compatible with `zerotier-idtool`).
    Idtool(idtool::IdtoolArgs),
    /// TCP fallback relay for nodes whose UDP is blocked (like the one at 204.80.128.1:443).
    TcpRelay(tcp_relay::TcpRelayArgs),
}

/// Whether `argv0` selects the `zerotier-idtool` personality (basename contains
/// `zerotier-idtool`, case-insensitively). spec: service.md §1
fn is_idtool_personality(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .to_ascii_lowercase()
                .contains("zerotier-idtool")
        })
        .unwrap_or(false)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let result = match args.first() {
        Some(argv0) if is_idtool_personality(argv0) => {
            let cli = idtool::IdtoolCli::parse_from(&args);
            idtool::run(cli.command)
        }
        _ => {
            let cli = Cli::parse_from(&args);
            match cli.command {
                Command::Daemon(a) => service::run(a),
                Command::Client(c) => cli::run(cli.client, c),
                Command::Idtool(a) => idtool::run(a.command),
                Command::TcpRelay(a) => tcp_relay::run(a),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personality_detection() {
        assert!(is_idtool_personality(&"zerotier-idtool".into()));
        assert!(is_idtool_personality(&"/usr/sbin/zerotier-idtool".into()));
        assert!(is_idtool_personality(&"./ZEROTIER-IDTOOL".into()));
        assert!(!is_idtool_personality(&"/usr/bin/weft".into()));
        assert!(!is_idtool_personality(&"/opt/zerotier-idtool/weft".into()));
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        idtool::IdtoolCli::command().debug_assert();
    }
}
