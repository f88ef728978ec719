//! A connect storm: many clients at once, each in a loop opening a TCP connection, completing a
//! full mutual-TLS handshake (no session resumption), sending one HTTP request and reading the
//! answer, which the server gives only after it has verified the client's certificate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::measure;
use crate::targets::{Server, System};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormSpec {
    /// Clients connecting at the same time.
    pub concurrency: usize,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormRun {
    pub system: System,
    pub spec: StormSpec,
    pub handshakes: u64,
    pub handshakes_per_s: f64,
    pub failures: u64,
    pub first_failure: Option<String>,
    pub server_cpu_percent: f64,
    /// Server CPU time per handshake, in microseconds.
    pub server_cpu_us_per_handshake: f64,
}

async fn once(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    request: &[u8],
    expected: &[u8],
) -> anyhow::Result<()> {
    let mut stream = crate::targets::tls::connect(addr, tls).await?;
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut answer = Vec::with_capacity(512);
    // The server closes after its answer (Connection: close); a reset after a full answer is fine.
    let _ = stream.read_to_end(&mut answer).await;
    // The exact status: a server that let a bad certificate through to an error page must not
    // count as a handshake done.
    if !answer.starts_with(expected) {
        let head = String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned();
        bail!("unexpected answer: {head:?}");
    }
    Ok(())
}

pub async fn run(server: &Server, spec: &StormSpec) -> anyhow::Result<StormRun> {
    let (tls, request, expected) = server.handshake_client()?;
    let addr = server.addr;
    let pid = server.pid();
    let duration = Duration::from_millis(spec.duration_ms);
    let cpu_start = measure::cpu_seconds(pid);
    let started = Instant::now();
    let until = started + duration;
    let mut workers = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        let tls = tls.clone();
        workers.push(tokio::spawn(async move {
            let (mut done, mut failed, mut first) = (0u64, 0u64, None);
            while Instant::now() < until {
                match tokio::time::timeout(
                    Duration::from_secs(10),
                    once(addr, tls.clone(), request, expected),
                )
                .await
                {
                    // Only exchanges completed inside the run count; the run's length is fixed.
                    Ok(Ok(())) if Instant::now() <= until => done += 1,
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        failed += 1;
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        failed += 1;
                        first.get_or_insert_with(|| "timed out after 10 s".to_owned());
                    }
                }
            }
            (done, failed, first)
        }));
    }
    let (mut handshakes, mut failures, mut first_failure) = (0, 0, None);
    for worker in workers {
        let (done, failed, first) = worker.await?;
        handshakes += done;
        failures += failed;
        if first_failure.is_none() {
            first_failure = first;
        }
    }
    let cpu = measure::cpu_seconds(pid) - cpu_start;
    let cpu_elapsed = started.elapsed().as_secs_f64();
    let elapsed = duration.as_secs_f64();
    Ok(StormRun {
        system: server.system,
        spec: spec.clone(),
        handshakes,
        handshakes_per_s: handshakes as f64 / elapsed,
        failures,
        first_failure,
        server_cpu_percent: 100.0 * cpu / cpu_elapsed,
        server_cpu_us_per_handshake: if handshakes == 0 {
            0.0
        } else {
            cpu * 1e6 / handshakes as f64
        },
    })
}
