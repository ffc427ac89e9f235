//! The host side: `ip` commands, the namespaces and processes the harness owns (and removes:
//! processes by PID, namespaces by name, also on Ctrl-C), program lookup, and a minimal HTTP
//! client for the ZeroTier-style local API (`__api`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What must be undone: processes (by PID), namespaces (by name), work folders.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    children: Vec<(String, Child, Option<ChildStdin>)>,
    namespaces: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Owned {
    /// Ends our processes (SIGTERM by PID, SIGKILL after 3 s), deletes the namespaces and the
    /// folders.
    pub(crate) fn clean(&mut self) {
        for (_, c, stdin) in &mut self.children {
            drop(stdin.take());
            if matches!(c.try_wait(), Ok(None)) {
                let _ = Command::new("kill").arg(c.id().to_string()).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c, _) in &mut self.children {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.children.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
        for d in self.dirs.drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// A description of what is kept (for `--keep`).
    pub(crate) fn describe(&self) -> String {
        let mut s = String::new();
        for ns in &self.namespaces {
            s.push_str(&format!("  namespace {ns}\n"));
        }
        for (what, c, _) in &self.children {
            s.push_str(&format!("  process {} ({what})\n", c.id()));
        }
        for d in &self.dirs {
            s.push_str(&format!("  folder {}\n", d.display()));
        }
        s
    }
}

/// The registry shared with the Ctrl-C handler.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry(Arc<Mutex<Owned>>);

impl Registry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Owned> {
        // a panic while holding the lock must not stop the cleanup
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add_dir(&self, d: PathBuf) {
        self.lock().dirs.push(d);
    }

    /// `ip netns add NAME` (the name is registered first, so a half-made one is deleted too),
    /// with `lo` up and nothing else: no default route.
    pub(crate) fn add_namespace(&self, name: &str) -> Result<()> {
        self.lock().namespaces.push(name.to_string());
        ip(&["netns", "add", name])?;
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// Starts `cmd` (stdout and stdin piped, stderr to `log` or inherited) and registers it.
    /// Returns its PID.
    pub(crate) fn spawn(&self, what: &str, cmd: &mut Command, log: Option<&Path>) -> Result<u32> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        match log {
            Some(p) => cmd.stderr(std::fs::File::create(p)?),
            None => cmd.stderr(Stdio::piped()),
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {what} ({:?})", cmd.get_program()))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        self.lock().children.push((what.to_string(), child, stdin));
        Ok(pid)
    }

    /// Whether process `pid` has ended (it stays registered until [`Registry::finish`]).
    pub(crate) fn exited(&self, pid: u32) -> Result<bool> {
        let mut g = self.lock();
        let c = g
            .children
            .iter_mut()
            .find(|c| c.1.id() == pid)
            .context("unknown process")?;
        Ok(c.1.try_wait()?.is_some())
    }

    /// Waits for process `pid` (which was started by [`Registry::spawn`]) to end, takes it out
    /// of the registry and returns its output.
    pub(crate) fn finish(&self, pid: u32) -> Result<Output> {
        let child = {
            let mut g = self.lock();
            let i = g
                .children
                .iter()
                .position(|c| c.1.id() == pid)
                .context("unknown process")?;
            g.children.remove(i).1
        };
        Ok(child.wait_with_output()?)
    }

    /// Ends process `pid` (SIGTERM, then SIGKILL) and forgets it.
    pub(crate) fn stop(&self, pid: u32) {
        let entry = {
            let mut g = self.lock();
            g.children
                .iter()
                .position(|c| c.1.id() == pid)
                .map(|i| g.children.remove(i))
        };
        if let Some((what, child, stdin)) = entry {
            let mut one = Owned {
                children: vec![(what, child, stdin)],
                ..Owned::default()
            };
            one.clean();
        }
    }

    /// Reads the first line process `pid` writes on stdout (e.g. the server's `ready`).
    pub(crate) fn first_line(&self, pid: u32, timeout: Duration) -> Result<String> {
        let out = {
            let mut g = self.lock();
            let c = g
                .children
                .iter_mut()
                .find(|c| c.1.id() == pid)
                .context("unknown process")?;
            c.1.stdout.take().context("stdout already taken")?
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(out).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        Ok(rx
            .recv_timeout(timeout)
            .context("no output within the time limit")??)
    }
}

/// Runs `ip ARGS`, failing with its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a program in namespace `ns` to completion, failing with its stderr; returns stdout.
pub(crate) fn ns_exec(ns: &str, program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The program `name` in `PATH` (and the sbin folders, which a non-login root shell may lack).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One HTTP/1.1 request to `127.0.0.1:port` with the `X-ZT1-Auth` token; the response body
/// (an error for a status other than 2xx).
pub(crate) fn http(port: u16, token: &str, method: &str, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_secs(5),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-ZT1-Auth: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Status line, headers, and a body framed by `Content-Length`, chunked encoding or the end of
/// the connection.
fn parse_response(raw: &[u8]) -> Result<String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("bad HTTP status line")?;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v.trim().parse()?;
            body = body.get(..n).context("short HTTP body")?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.trim() == "chunked" {
            chunked = true;
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("bad chunk")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).context("short chunk")?);
            rest = rest.get(size + 2..).context("short chunk")?;
        }
        String::from_utf8(out)?
    } else {
        String::from_utf8(body.to_vec())?
    };
    if !(200..300).contains(&status) {
        bail!("HTTP {status}: {}", body.trim());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n{}\r\nextra";
        assert_eq!(parse_response(r).expect("ok"), "{}\r\n");
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).expect("ok"), "{\"a\":1}");
        let r = b"HTTP/1.1 401 Unauthorized\r\n\r\nno";
        assert!(
            parse_response(r)
                .expect_err("401")
                .to_string()
                .contains("HTTP 401")
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("surely-not-a-program-weft").is_none());
    }
}
