//! What the servers of this test process log, kept in memory so that a test can check the reason
//! an operator would read for a refusal. The server logs each connection under its peer address
//! (`peer=127.0.0.1:PORT`), so a test finds its own lines by the local address of its socket.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// The log lines of every server in this process, from their installation on.
#[derive(Debug, Clone, Default)]
pub struct ServerLog(Arc<Mutex<Vec<u8>>>);

impl Write for ServerLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing the listener's log (at `info`, as a deployment logs by default); idempotent.
pub fn capture() -> ServerLog {
    static LOG: OnceLock<ServerLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = ServerLog::default();
        let writer = log.clone();
        // A second subscriber (another harness) would make this fail: then nothing is captured
        // and `lines_of` says so through the test that asked.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "escape_server::listener=info,escape_server::http::principal=info",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        log
    })
    .clone()
}

impl ServerLog {
    /// The lines logged about the connection from `peer`, waiting up to two seconds for at least
    /// one (a server logs a refusal after the client has seen it).
    pub async fn lines_of(&self, peer: SocketAddr) -> Vec<String> {
        let field = format!("peer={peer}");
        for _ in 0..40 {
            let text =
                String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                    .into_owned();
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.ends_with(&field) || l.contains(&format!("{field} ")))
                .map(str::to_owned)
                .collect();
            if !lines.is_empty() {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Vec::new()
    }
}
