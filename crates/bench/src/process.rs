//! Programs under measurement, each run as its own process (its RSS is its
//! own), killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A free loopback port (bound, then released for the program to take).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The release binary `name` beside the running benchmark binary (they are
/// built together), unless `explicit` names one.
pub fn sibling_binary(explicit: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let me = std::env::current_exe().context("locating this benchmark binary")?;
    let path = me.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release -p kargo-harbor-receiver -p bench`",
        path.display()
    );
    Ok(path)
}

/// A running program; its stderr goes to a log file shown on failure.
pub struct Program {
    name: &'static str,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Program {
    /// Starts `binary` with `args` and `env`.
    pub fn start(
        name: &'static str,
        binary: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Program> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Program {
            name,
            child,
            log,
            _dir: dir,
        })
    }

    /// The receiver binary serving its webhook port on `listen` and metrics
    /// on `metrics`, against the cluster of `kubeconfig`, logging warnings
    /// only unless `env` says otherwise (e.g. `RUST_LOG`, `LOG_FORMAT`).
    pub fn receiver(
        binary: &Path,
        kubeconfig: &Path,
        listen: SocketAddr,
        metrics: SocketAddr,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Program> {
        let args = [
            "run".to_owned(),
            "--base-url".to_owned(),
            "http://127.0.0.1".to_owned(),
            "--listen".to_owned(),
            listen.to_string(),
            "--metrics-listen".to_owned(),
            metrics.to_string(),
            "--lease-namespace".to_owned(),
            "default".to_owned(),
            "--identity".to_owned(),
            "bench".to_owned(),
        ];
        let kubeconfig = kubeconfig.to_string_lossy();
        let mut all = vec![("KUBECONFIG", &*kubeconfig), ("RUST_LOG", "warn")];
        all.extend_from_slice(env);
        Program::start("receiver", binary, &args, &all)
    }

    /// Bytes it has logged so far.
    pub fn log_len(&self) -> anyhow::Result<u64> {
        Ok(std::fs::metadata(&self.log)?.len())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("reading the status of {}", self.name))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid()))
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }

    /// CPU time used so far by all its threads (from each thread's
    /// `schedstat`, in nanoseconds): unlike throughput, barely affected by
    /// what else runs on the machine.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let tasks = format!("/proc/{}/task", self.pid());
        let mut total = 0u64;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            let path = task?.path().join("schedstat");
            // A thread may end between the listing and the read.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .with_context(|| format!("no CPU time in {}", path.display()))?;
        }
        Ok(Duration::from_nanos(total))
    }

    /// Fails, with the end of its log, if the program has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// `VmRSS`: now.
    pub rss: u64,
    /// `VmHWM`: the peak so far.
    pub peak: u64,
}
