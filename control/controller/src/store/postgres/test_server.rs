//! A PostgreSQL server for tests and benchmarks (feature `testsuite`).
//!
//! [`TestServer::start`] uses the server named by `WEFT_TEST_POSTGRES_URL` when that is set
//! (any connection setting [`super::parse_config`] accepts; the role needs `CREATEDB`), and
//! otherwise starts a private cluster: `initdb` into a fresh temporary folder, then `pg_ctl
//! start` listening only on a Unix socket in that folder (no TCP port, nothing shared with other
//! tests), with `fsync` off. As root the cluster runs as the `postgres` user (`runuser -u
//! postgres --`), since PostgreSQL refuses to run as root. The binaries are looked up in
//! `WEFT_TEST_POSTGRES_BIN`, then the newest `/usr/lib/postgresql/<version>/bin`, then `PATH`
//! (`scripts/install-test-deps.sh` installs Debian's `postgresql`).
//!
//! [`TestServer::create_database`] makes a new empty database and returns its connection
//! setting. Dropping the server drops those databases (external server) or stops the private
//! cluster (`pg_ctl stop`, which signals the postmaster whose PID the cluster's own
//! `postmaster.pid` holds: only the server this helper started) and deletes its folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

use postgres::{Client, NoTls};

/// The role the private cluster's superuser gets.
const ROLE: &str = "weft";

/// A PostgreSQL server for tests; see the module documentation.
#[derive(Debug)]
pub struct TestServer {
    kind: Kind,
    /// Databases created on an external server (dropped at the end).
    created: Mutex<Vec<String>>,
    /// Distinguishes this server's database names on a shared external server.
    tag: String,
}

#[derive(Debug)]
enum Kind {
    External {
        /// The setting from `WEFT_TEST_POSTGRES_URL`.
        base: String,
    },
    Private {
        dir: tempfile::TempDir,
        bin: PathBuf,
        as_postgres: bool,
    },
}

fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("WEFT_TEST_POSTGRES_BIN") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output()
        && o.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if bin.join("initdb").is_file() {
            return Ok(bin);
        }
    }
    Err(
        "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's `postgresql` \
         (scripts/install-test-deps.sh), set WEFT_TEST_POSTGRES_BIN, or point \
         WEFT_TEST_POSTGRES_URL at a server"
            .into(),
    )
}

impl TestServer {
    /// The server of `WEFT_TEST_POSTGRES_URL`, or a freshly started private cluster.
    pub fn start() -> Result<TestServer, String> {
        let tag = format!(
            "{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        if let Ok(base) = std::env::var("WEFT_TEST_POSTGRES_URL")
            && !base.trim().is_empty()
        {
            return Ok(TestServer {
                kind: Kind::External { base },
                created: Mutex::default(),
                tag,
            });
        }
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("weft-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let server = TestServer {
            kind: Kind::Private {
                dir,
                bin,
                as_postgres,
            },
            created: Mutex::default(),
            tag,
        };
        server.init_and_start()?;
        Ok(server)
    }

    /// Runs a server binary (as `postgres` when we are root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let Kind::Private {
            bin, as_postgres, ..
        } = &self.kind
        else {
            unreachable!("only private clusters run binaries")
        };
        let exe = bin.join(program);
        let mut cmd = if *as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // stdout/stderr captured (pg_ctl's server log goes to a file): a started server must
        // not keep a pipe of ours open
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?} failed ({}): {}",
                out.status,
                output_text(&out)
            ))
        }
    }

    fn dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Private { dir, .. } => Some(dir.path()),
            Kind::External { .. } => None,
        }
    }

    fn init_and_start(&self) -> Result<(), String> {
        let dir = self.dir().expect("private");
        let Kind::Private { as_postgres, .. } = &self.kind else {
            unreachable!()
        };
        if *as_postgres {
            let out = Command::new("chown")
                .args(["postgres:", "--"])
                .arg(dir)
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "chown postgres {}: {}",
                    dir.display(),
                    output_text(&out)
                ));
            }
        }
        let data = dir.join("data");
        let log = dir.join("server.log");
        let socket_dir = dir.to_str().ok_or("temp dir path is not UTF-8")?;
        self.run(
            "initdb",
            &[
                "-D",
                data.to_str().ok_or("path")?,
                "-U",
                ROLE,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        .map_err(|e| format!("{e}\n(is PostgreSQL installed? see scripts/install-test-deps.sh)"))?;
        let opts = format!(
            "-c listen_addresses='' -k {socket_dir} -c unix_socket_permissions=0777 -F \
             -c max_connections=200"
        );
        let started = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().ok_or("path")?,
                "-l",
                log.to_str().ok_or("path")?,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{e}\nserver log:\n{log}"));
        }
        Ok(())
    }

    /// The connection setting of database `dbname`.
    fn setting(&self, dbname: &str) -> String {
        match &self.kind {
            Kind::External { base } => with_dbname(base, dbname),
            Kind::Private { dir, .. } => format!(
                "host={} port=5432 user={ROLE} dbname={dbname}",
                dir.path().display()
            ),
        }
    }

    fn admin(&self) -> Result<Client, String> {
        let setting = match &self.kind {
            Kind::External { base } => base.clone(),
            Kind::Private { .. } => self.setting("postgres"),
        };
        super::parse_config(&setting)
            .map_err(|e| e.to_string())?
            .connect(NoTls)
            .map_err(|e| format!("connecting to the test server: {e}"))
    }

    /// Creates an empty database (named after `hint`, unique to this server) and returns its
    /// connection setting (libpq `key=value` form, or the external URL with the database
    /// replaced).
    pub fn create_database(&self, hint: &str) -> Result<String, String> {
        let clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!("weft_{}_{clean}", self.tag);
        self.admin()?
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.clone());
        Ok(self.setting(&name))
    }
}

/// `base` with its database replaced by `dbname`, in the form `base` was written in.
fn with_dbname(base: &str, dbname: &str) -> String {
    let b = base.trim();
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = b.strip_prefix(scheme) {
            let (rest, query) = rest
                .split_once('?')
                .map_or((rest, None), |(r, q)| (r, Some(q)));
            let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
            return match query {
                Some(q) => format!("{scheme}{authority}/{dbname}?{q}"),
                None => format!("{scheme}{authority}/{dbname}"),
            };
        }
    }
    // key=value: a later dbname= wins
    format!(
        "{} dbname={dbname}",
        b.strip_prefix("postgres:").unwrap_or(b)
    )
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match &self.kind {
            Kind::External { .. } => {
                if let Ok(mut admin) = self.admin() {
                    let created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
                    for name in created.iter() {
                        let _ = admin.batch_execute(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ));
                    }
                }
            }
            Kind::Private { dir, .. } => {
                let data = dir.path().join("data");
                if let Some(data) = data.to_str() {
                    let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
                }
                // the TempDir field removes the folder
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_replaced_in_either_form() {
        for (base, want) in [
            ("postgres://u:p@h:5433/db", "postgres://u:p@h:5433/x"),
            ("postgresql://u@h", "postgresql://u@h/x"),
            (
                "postgres://u@h/db?sslmode=disable",
                "postgres://u@h/x?sslmode=disable",
            ),
            (
                "postgres:host=/tmp dbname=db",
                "host=/tmp dbname=db dbname=x",
            ),
        ] {
            assert_eq!(with_dbname(base, "x"), want);
            let c = super::super::parse_config(&with_dbname(base, "x")).unwrap();
            assert_eq!(c.get_dbname(), Some("x"), "{base}");
        }
    }
}
