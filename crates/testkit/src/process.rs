//! Processes a test starts (`orderstream` members, relays, stages): their output is read while
//! they run, they are stopped the way a user stops them, and none outlives a failing test.
//!
//! Why not a bare [`std::process::Child`] with piped output: nothing reads the pipes until the
//! test collects the output, so a process that writes more than a pipe holds (64 KiB of log
//! lines, e.g. warnings through a long rebalance) blocks in its next write and stops working,
//! which looks exactly like a product stall. And a test that panics drops its `Child`s without
//! killing them, leaving members in groups that later tests share a cluster with.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running child process whose stdout and stderr are collected as they are written. Dropping
/// it SIGKILLs the process if it still runs.
#[derive(Debug)]
pub struct Spawned {
    name: String,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // a read error ends the collection; what was read is kept
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

impl Spawned {
    /// Starts `cmd` with stdout and stderr piped and collected; `name` appears in failures.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn start(name: impl Into<String>, cmd: &mut Command) -> Self {
        Self::start_with_stderr(name, cmd, Stdio::piped())
    }

    /// Like [`Spawned::start`], with stderr sent to `stderr` (e.g. a log file the test reads;
    /// the collected output's stderr is then empty).
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn start_with_stderr(name: impl Into<String>, cmd: &mut Command, stderr: Stdio) -> Self {
        let name = name.into();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Self {
            name,
            child,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    ///
    /// # Panics
    /// When the status cannot be read.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("status of {}: {e}", self.name))
    }

    /// SIGKILLs the process (a crash) and returns what it wrote.
    ///
    /// # Panics
    /// When the process cannot be killed or waited for.
    pub fn kill(&mut self) -> Output {
        if self.exited().is_none() {
            self.child
                .kill()
                .unwrap_or_else(|e| panic!("SIGKILL {}: {e}", self.name));
        }
        self.collect()
    }

    /// Stops the process the way a user does (SIGINT, i.e. Ctrl-C) and returns its output once
    /// it exited; kills it and fails the test when it has not exited within `timeout`.
    ///
    /// # Panics
    /// When the signal cannot be sent or the process outlives `timeout`.
    pub fn interrupt(mut self, timeout: Duration) -> Output {
        if self.exited().is_none() {
            let pid = self.id().to_string();
            let sent = Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap_or_else(|e| panic!("run kill -INT {pid}: {e}"));
            assert!(sent.success(), "kill -INT {pid} ({})", self.name);
        }
        self.wait(timeout)
    }

    /// Waits until the process exits by itself and returns its output; kills it and fails the
    /// test when it has not exited within `timeout`.
    ///
    /// # Panics
    /// When the process outlives `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        while self.exited().is_none() {
            if Instant::now() > deadline {
                let name = self.name.clone();
                let out = self.kill();
                panic!(
                    "{name} did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.collect()
    }

    fn collect(&mut self) -> Output {
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name));
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            // The test failed (or forgot it): what the process said last explains more than
            // the test's own message.
            let err = self
                .stderr
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default();
            let err = String::from_utf8_lossy(&err);
            let lines: Vec<&str> = err.lines().collect();
            eprintln!(
                "{} (pid {}) was still running at the end of the test: killed; its last stderr lines:\n{}",
                self.name,
                self.child.id(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_larger_than_a_pipe_does_not_block_the_child() {
        // 1 MiB to each stream, then the child waits a little: with unread pipes it would block
        // in its first 64 KiB and never reach the wait. It ends by itself, not on SIGINT: a
        // process started in the background of a non-interactive shell (e.g. a CI runner's)
        // inherits SIGINT ignored, and `sleep` keeps it that way.
        let child = Spawned::start(
            "writer",
            Command::new("sh").args([
                "-c",
                "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2; echo done >&2; exec sleep 3",
            ]),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        // `sleep` replaced the shell once both writes finished
        while std::fs::read_to_string(format!("/proc/{}/cmdline", child.id()))
            .is_ok_and(|c| !c.starts_with("sleep"))
        {
            assert!(Instant::now() < deadline, "the child is stuck writing");
            assert!(child.exited().is_none(), "the child ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait(Duration::from_secs(10));
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(out.stdout.len(), 1_048_576);
        assert_eq!(out.stderr.len(), 1_048_576 + "done\n".len());
    }

    #[test]
    fn a_dropped_child_is_killed() {
        let child = Spawned::start("sleeper", Command::new("sleep").arg("30"));
        let pid = child.id();
        drop(child);
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(state.is_empty(), "process {pid} still exists: {state}");
    }
}
