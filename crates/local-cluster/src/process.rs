//! Child processes that die with their handle: a failing test or an interrupted demo leaves
//! nothing running.

use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::wait;

/// How often [`ChildProcess::wait`] looks whether the process has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// A child process, killed (SIGCONT, then SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    /// `None` once reaped: its pid may belong to another process by then, so it is never
    /// signalled again.
    child: Option<Child>,
}

impl ChildProcess {
    /// Starts `command`.
    pub fn spawn(command: &mut Command) -> std::io::Result<ChildProcess> {
        Ok(ChildProcess {
            child: Some(command.spawn()?),
        })
    }

    /// The process id, while the process is ours to signal.
    pub fn pid(&self) -> Option<Pid> {
        // Pids fit in an i32 on Linux; anything else would not be ours to signal.
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .map(Pid::from_raw)
    }

    /// Sends `sig` to the process, if it is still ours (never to pid 0, which would be the
    /// whole process group).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `timeout` (as given: not scaled) for the process to exit, and reaps it; its
    /// exit code, or `None` on timeout, when already reaped, or when a signal ended it.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let status = wait::poll(timeout, EXIT_POLL, || {
            let status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            async move { status }
        })
        .await?;
        self.child = None;
        status.code()
    }

    /// Resident memory in bytes (0 when it cannot be read).
    pub fn rss_bytes(&self) -> u64 {
        self.child.as_ref().map_or(0, |c| rss_bytes(c.id()))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // A stopped process (SIGSTOP in failure tests) is continued first, so that nothing
        // depends on how the kernel treats SIGKILL of a stopped process.
        self.signal(Signal::SIGCONT);
        self.kill();
    }
}

/// Resident memory of process `pid` in bytes, from `/proc` (0 when it cannot be read).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_is_waited_for_signalled_and_killed_on_drop() -> std::io::Result<()> {
        let mut quick = ChildProcess::spawn(Command::new("sh").args(["-c", "exit 3"]))?;
        assert_eq!(quick.wait(Duration::from_secs(10)).await, Some(3));
        assert!(quick.pid().is_none(), "reaped: not ours to signal any more");

        let mut sleeper = ChildProcess::spawn(Command::new("sleep").arg("60"))?;
        assert!(sleeper.is_running());
        assert!(sleeper.rss_bytes() > 0);
        assert_eq!(sleeper.wait(Duration::from_millis(50)).await, None);
        sleeper.signal(Signal::SIGTERM);
        assert_eq!(sleeper.wait(Duration::from_secs(10)).await, None, "killed");
        assert!(!sleeper.is_running());

        let stopped = ChildProcess::spawn(Command::new("sleep").arg("60"))?;
        let pid = stopped.pid();
        stopped.signal(Signal::SIGSTOP);
        drop(stopped);
        let pid = pid.map_or(0, |p| p.as_raw().unsigned_abs());
        assert_eq!(rss_bytes(pid), 0, "the dropped process is gone");
        Ok(())
    }
}
