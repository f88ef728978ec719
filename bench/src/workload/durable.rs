//! Durable sends: Escape acknowledges a message only once it is on disk. Senders keep a window of
//! messages in flight and the run counts acknowledgements per second, next to the disk's own rate
//! of synchronous 4 KiB writes measured in the same folder (what one message per fsync would give).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::measure::Latency;
use crate::targets::Server;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DurableSpec {
    pub connections: usize,
    /// Unacknowledged messages each connection keeps in flight.
    pub in_flight: u64,
    pub size: usize,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DurableRun {
    pub spec: DurableSpec,
    pub acked: u64,
    pub acked_per_s: f64,
    pub ack_latency: Latency,
    /// The mean of the probes below.
    pub fsyncs_per_s: f64,
    /// The disk's rate measured before the run and after it: on a shared machine it drifts by
    /// a quarter or more between runs, so both are kept and the ratio uses their mean.
    #[serde(default)]
    pub fsync_probes: Vec<f64>,
    /// Acknowledged messages per second over synchronous writes per second.
    pub ratio_to_fsync: f64,
    pub errors: Vec<String>,
}

/// Synchronous 4 KiB writes per second in `dir` (write, then fdatasync, in a loop).
pub fn fsync_rate(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5a; 4096];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        file.write_all(&block)?;
        file.sync_data()?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// The disk's fsync rate in the server's folder, probed for two seconds off the runtime.
async fn probe_fsyncs(server: &Server) -> anyhow::Result<f64> {
    let dir = server.dir.path().to_owned();
    tokio::task::spawn_blocking(move || fsync_rate(&dir, Duration::from_secs(2))).await?
}

pub async fn run(server: &Server, spec: &DurableSpec) -> anyhow::Result<DurableRun> {
    let link = server.escape()?;
    let before = probe_fsyncs(server).await?;
    // Connected first, so the time spent connecting is not counted as time without acks.
    let mut publishers = Vec::with_capacity(spec.connections);
    for c in 0..spec.connections {
        // One room per connection: each room's appends are ordered under its own lock.
        publishers.push(crate::targets::escape::publisher(link, c).await?);
    }
    let started = Instant::now();
    let until = started + Duration::from_millis(spec.duration_ms);
    let mut senders = Vec::with_capacity(spec.connections);
    for mut publisher in publishers {
        let (window, size) = (spec.in_flight, spec.size);
        senders.push(tokio::spawn(async move {
            let mut error = None;
            let book = publisher.book.clone();
            while Instant::now() < until {
                let acked = book.acked.notified();
                if publisher.in_flight() < window {
                    if let Err(e) = publisher.publish(&clock::stamped_payload(size)).await {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                } else {
                    let _ = tokio::time::timeout(Duration::from_millis(100), acked).await;
                }
                if let Some(e) = publisher.error() {
                    error = Some(e);
                    break;
                }
            }
            publisher
                .book
                .latencies
                .lock()
                .map(|mut l| std::mem::take(&mut *l))
                .map(|l| (publisher.book.acks.load(Ordering::Relaxed), l, error))
                .unwrap_or_default()
        }));
    }
    let (mut acked, mut latencies, mut errors) = (0, Vec::new(), Vec::new());
    for sender in senders {
        let (count, samples, error) = sender.await?;
        acked += count;
        latencies.extend(samples);
        errors.extend(error);
    }
    let elapsed = started
        .elapsed()
        .as_secs_f64()
        .max(spec.duration_ms as f64 / 1000.0);
    let fsync_probes = vec![before, probe_fsyncs(server).await?];
    let fsyncs_per_s = fsync_probes.iter().sum::<f64>() / fsync_probes.len() as f64;
    let acked_per_s = acked as f64 / elapsed;
    Ok(DurableRun {
        spec: spec.clone(),
        acked,
        acked_per_s,
        ack_latency: Latency::of(latencies),
        fsyncs_per_s,
        fsync_probes,
        ratio_to_fsync: acked_per_s / fsyncs_per_s.max(1.0),
        errors,
    })
}
