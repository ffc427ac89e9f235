//! Processes started inside lab namespaces: logs in the lab's log directory, stopped by PID when
//! the lab drops.

use std::cell::RefMut;
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::{Lab, Ns, describe, find_tool, sanitize, tool};

/// How long [`Lab::stop`] and the lab's `Drop` wait after SIGTERM before sending SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A process started by [`Lab::spawn`]. A plain handle: the lab owns the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    lab: u32,
    idx: usize,
    pid: u32,
}

impl Proc {
    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// A spawned process the lab owns.
#[derive(Debug)]
pub(crate) struct Tracked {
    label: String,
    ns: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Tracked {
    /// Reaps the child if it has exited (never blocks).
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
        }
        self.status
    }

    /// Sends `sig` if the child has not been reaped (so the PID is still ours).
    fn signal(&mut self, sig: Signal) {
        if self.poll().is_none()
            && let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw)
        {
            let _ = kill_process(pid, sig);
        }
    }

    /// SIGKILL and reap.
    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        if self.poll().is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
        }
        self.status
    }
}

impl Lab {
    /// Starts `cmd` (program, arguments, environment and working directory are taken from it;
    /// its stdio settings are not) inside `ns` via `ip netns exec`, with stdin closed and
    /// stdout/stderr going to `<log dir>/<n>-<label>.stdout` / `.stderr`. The lab stops it when
    /// it drops (SIGTERM, then SIGKILL after 3 s); if the lab's thread dies without dropping it
    /// (the test process is killed), the child gets SIGKILL (`setpriv --pdeathsig`).
    pub fn spawn(&self, ns: &Ns, label: &str, cmd: &Command) -> Proc {
        let idx = self.procs.borrow().len();
        let base = format!("{idx:02}-{}", sanitize(label, 32));
        let stdout = self.log_dir.join(format!("{base}.stdout"));
        let stderr = self.log_dir.join(format!("{base}.stderr"));
        let create = |p: &PathBuf| {
            File::create(p).unwrap_or_else(|e| panic!("creating log file {}: {e}", p.display()))
        };
        let mut wrapped = Command::new(tool("ip"));
        wrapped.args(["netns", "exec", ns.name()]);
        // If this process dies without dropping the lab (SIGKILL, abort), the child gets SIGKILL
        // too instead of running on in an orphaned namespace. setpriv (util-linux, essential on
        // Debian) sets that up and then execs the program, so the PID stays the program's.
        if let Some(setpriv) = find_tool("setpriv") {
            wrapped.arg(setpriv).args(["--pdeathsig", "KILL", "--"]);
        }
        wrapped
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::null())
            .stdout(create(&stdout))
            .stderr(create(&stderr));
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let line = describe(&wrapped);
        let child = wrapped
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let pid = child.id();
        self.log_line(&format!(
            "$ {line} &  -> pid {pid}, logs {base}.stdout/.stderr"
        ));
        self.procs.borrow_mut().push(Tracked {
            label: label.to_string(),
            ns: ns.name().to_string(),
            child,
            stdout,
            stderr,
            status: None,
        });
        Proc {
            lab: self.seq,
            idx,
            pid,
        }
    }

    /// The exit status if `p` has exited (never blocks).
    pub fn try_wait(&self, p: Proc) -> Option<ExitStatus> {
        self.tracked(p).poll()
    }

    /// Waits up to `timeout` for `p` to exit.
    pub fn wait_timeout(&self, p: Proc, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait(p) {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops `p`: SIGTERM, then SIGKILL if it has not exited after 3 s. Returns its exit status.
    pub fn stop(&self, p: Proc) -> Option<ExitStatus> {
        self.tracked(p).signal(Signal::TERM);
        if let Some(st) = self.wait_timeout(p, TERM_GRACE) {
            return Some(st);
        }
        self.tracked(p).kill_and_reap()
    }

    /// Kills `p` at once (SIGKILL, no chance to clean up) and reaps it: a crash.
    pub fn kill(&self, p: Proc) -> Option<ExitStatus> {
        self.tracked(p).kill_and_reap()
    }

    /// What `p` has written to stdout so far.
    pub fn stdout(&self, p: Proc) -> String {
        let path = self.tracked(p).stdout.clone();
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// What `p` has written to stderr so far.
    pub fn stderr(&self, p: Proc) -> String {
        let path = self.tracked(p).stderr.clone();
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// The tracked process behind `p`; panics if `p` comes from another lab.
    fn tracked(&self, p: Proc) -> RefMut<'_, Tracked> {
        assert_eq!(
            p.lab, self.seq,
            "process handle {p:?} belongs to another lab"
        );
        RefMut::map(self.procs.borrow_mut(), |procs| &mut procs[p.idx])
    }

    /// Stops every process still running: SIGTERM to all, a grace period, then SIGKILL. Only
    /// children the lab started and has not reaped are signalled.
    pub(crate) fn stop_all(&self) {
        let mut procs = self.procs.borrow_mut();
        for t in procs.iter_mut() {
            t.signal(Signal::TERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        while procs.iter_mut().any(|t| t.poll().is_none()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for t in procs.iter_mut() {
            if t.poll().is_none() {
                eprintln!(
                    "netns lab {}: {} (pid {}) ignored SIGTERM for {TERM_GRACE:?}; killing it",
                    self.test,
                    t.label,
                    t.child.id()
                );
            }
            t.kill_and_reap();
        }
    }

    /// Prints the last lines of every process log (for failed tests).
    pub(crate) fn print_log_tails(&self) {
        const LINES: usize = 40;
        for t in self.procs.borrow().iter() {
            for path in [&t.stdout, &t.stderr] {
                let text = fs::read_to_string(path).unwrap_or_default();
                if text.trim().is_empty() {
                    continue;
                }
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(LINES);
                eprintln!(
                    "--- {} in {} ({}), last {} lines, status {:?} ---",
                    t.label,
                    t.ns,
                    path.display(),
                    lines.len() - start,
                    t.status
                );
                for l in &lines[start..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}
