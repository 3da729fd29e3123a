//! The built binary as a child process: started with the test arguments,
//! its output captured, stopped with real signals.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{binary_path, unique_identity, BASE_URL};

/// A running `kargo-harbor-receiver run`; killed on drop if still running.
pub struct Binary {
    /// The process.
    pub child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where its webhook listener listens.
    pub listen: SocketAddr,
    /// Where its metrics listener listens.
    pub metrics: SocketAddr,
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl Binary {
    /// Starts the binary against the API server of `kubeconfig`, with
    /// `RUST_LOG=rust_log`, loopback listeners, a 2 s Lease in `default`,
    /// a unique identity, then `extra` arguments.
    pub fn start(kubeconfig: &Path, rust_log: &str, extra: &[&str]) -> Binary {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let identity = unique_identity();
        let mut args = vec![
            "run".to_string(),
            "--base-url".into(),
            BASE_URL.into(),
            "--listen".into(),
            listen.to_string(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--lease-namespace".into(),
            "default".into(),
            "--lease-duration".into(),
            "2s".into(),
            "--identity".into(),
            identity,
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = std::process::Command::new(binary_path())
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", rust_log)
            .env_remove("EXTERNAL_WEBHOOK_SERVER_BASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the binary: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let pipes: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut pipe in pipes {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        Binary {
            child,
            output,
            listen,
            metrics,
        }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// `http://<listen><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// Sends `signal` (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Waits for the exit, panicking with the output after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait: {e}"))
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the binary did not exit within {within:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
