//! `weft daemon`: the node service. Today it runs the VL1 protocol core over plain UDP sockets
//! in one process (the data plane split and the fast back-ends come later), persists worlds and
//! the peer cache in the home folder, and publishes its state to `<home>/status.json`.
//! spec: vl1.md §0.1, §7.5, §8.14; service.md §1–§3

mod api;
mod controller_api;
pub(crate) mod dataplane;
mod home;
mod json;
mod metrics;
mod ports;
mod run;
mod tcp_fallback;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `weft daemon`.
#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Home folder (default: $WEFT_HOME, else /var/lib/weft).
    pub(crate) home: Option<PathBuf>,
    /// UDP port (0 = random in 20000..65499). `settings.primaryPort` in local.conf overrides it.
    #[arg(short = 'p', long = "port", default_value_t = 9993)]
    pub(crate) port: u16,
    /// Run the data plane in this process instead of a separate `weft dataplane` process
    /// (laptops, debugging).
    #[arg(long)]
    pub(crate) single_process: bool,
}

/// The home folder a command uses.
pub(crate) fn home_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| std::env::var_os("WEFT_HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/weft"))
}

/// Runs the daemon until SIGINT/SIGTERM.
pub(crate) fn run(args: DaemonArgs) -> Result<ExitCode> {
    run::run(home_dir(args.home), args.port, args.single_process)
}
