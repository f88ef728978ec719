//! Room fan-out: followers spread over rooms, one publisher per room sending at a fixed rate
//! (open loop: messages are due at fixed times whether or not the server keeps up, and carry the
//! time they were due), latency measured at each receiver from that time.
//!
//! A run has a warm-up, a measurement window and a drain. Only messages due inside the window
//! count: each should reach every follower of its room; those that have not by the end of the
//! drain are lost. Throughput is deliveries that arrived inside the window, per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::{self, now_ns};
use crate::measure::{self, Latency};
use crate::targets::{Server, System};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutSpec {
    /// Following connections, spread evenly over the rooms.
    pub clients: usize,
    pub rooms: usize,
    /// Payload bytes of every message.
    pub size: usize,
    /// Messages per second sent, all rooms together.
    pub rate: f64,
    pub warmup_ms: u64,
    pub window_ms: u64,
    /// Longest wait after the window for deliveries still on their way.
    pub drain_ms: u64,
}

impl FanoutSpec {
    /// Deliveries per second this spec asks for.
    pub fn offered(&self) -> f64 {
        self.rate * self.clients as f64 / self.rooms.max(1) as f64
    }

    /// The spec whose offered deliveries per second are `deliveries`.
    pub fn for_deliveries(&self, deliveries: f64) -> Self {
        Self {
            rate: deliveries * self.rooms.max(1) as f64 / self.clients.max(1) as f64,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutRun {
    pub system: System,
    pub spec: FanoutSpec,
    pub offered_deliveries_per_s: f64,
    /// Messages due inside the window and sent.
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Deliveries that arrived inside the window, per second.
    pub deliveries_per_s: f64,
    pub latency: Latency,
    /// Server CPU over the window, 100 = one core busy.
    pub server_cpu_percent: f64,
    pub server_peak_rss_mib: f64,
    pub errors: Vec<String>,
}

impl FanoutRun {
    /// Whether the server kept up: nearly all of the offered load arrived, nothing was lost,
    /// no connection failed.
    pub fn kept_up(&self) -> bool {
        self.errors.is_empty()
            && self.lost == 0
            && self.deliveries_per_s >= 0.9 * self.offered_deliveries_per_s
    }
}

#[derive(Debug, Default)]
struct Received {
    latencies: Vec<u64>,
    in_window: u64,
    arrived_in_window: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn contains(&self, t: u64) -> bool {
        (self.start..self.end).contains(&t)
    }
}

pub async fn run(server: &Server, spec: &FanoutSpec) -> anyhow::Result<FanoutRun> {
    if !(spec.rate > 0.0 && spec.rate.is_finite()) || spec.window_ms == 0 || spec.clients == 0 {
        anyhow::bail!("a fan-out run needs a rate above 0, a window above 0 ms and clients");
    }
    let rooms = spec.rooms.max(1);
    let followers = super::followers(server, spec.clients, rooms, 0).await?;
    let mut per_room = vec![0u64; rooms];
    for (room, _) in &followers {
        per_room[*room] += 1;
    }
    let mut publishers = Vec::with_capacity(rooms);
    for room in 0..rooms {
        publishers.push(server.publisher(room).await?);
    }

    let origin = now_ns() + clock::ns(Duration::from_millis(200));
    let window = Window {
        start: origin + clock::ns(Duration::from_millis(spec.warmup_ms)),
        end: origin + clock::ns(Duration::from_millis(spec.warmup_ms + spec.window_ms)),
    };
    let stop = CancellationToken::new();
    let delivered = Arc::new(AtomicU64::new(0));

    let mut receiving = Vec::with_capacity(followers.len());
    for (_, follower) in followers {
        let (stop, delivered) = (stop.clone(), delivered.clone());
        receiving.push(tokio::spawn(async move {
            let mut got = Received::default();
            let result = {
                let reading = follower.run(|frame| {
                    let Some(due) = clock::find_stamp(frame) else {
                        return;
                    };
                    let now = now_ns();
                    if window.contains(now) {
                        got.arrived_in_window += 1;
                    }
                    if window.contains(due) {
                        got.in_window += 1;
                        got.latencies.push(now.saturating_sub(due));
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                });
                tokio::select! {
                    result = reading => result,
                    () = stop.cancelled() => Ok(()),
                }
            };
            (got, result.err().map(|e| format!("follower: {e:#}")))
        }));
    }

    let interval_ns = 1e9 * rooms as f64 / spec.rate;
    let mut sending = Vec::with_capacity(rooms);
    for (room, mut publisher) in publishers.into_iter().enumerate() {
        let size = spec.size;
        // Rooms take turns: room r sends r/R of an interval after room 0, so the rooms' messages
        // are spread over time instead of arriving as one burst that latency would then measure.
        let offset = room as f64 * interval_ns / rooms as f64;
        sending.push(tokio::spawn(async move {
            let mut k: u64 = 0;
            let mut sent_in_window = 0u64;
            loop {
                let due = origin.saturating_add((offset + k as f64 * interval_ns) as u64);
                if due >= window.end {
                    break;
                }
                let now = now_ns();
                if due > now {
                    tokio::time::sleep(Duration::from_nanos((due - now).min(1_000_000))).await;
                    continue;
                }
                if let Err(e) = publisher.publish(&clock::stamped_at(due, size)).await {
                    return (sent_in_window, Some(format!("publisher: {e:#}")), publisher);
                }
                if window.contains(due) {
                    sent_in_window += 1;
                }
                k += 1;
            }
            (sent_in_window, None, publisher)
        }));
    }

    // Server CPU and memory over the window.
    let pid = server.pid();
    tokio::time::sleep(Duration::from_nanos(window.start.saturating_sub(now_ns()))).await;
    let (cpu_start, cpu_from) = (measure::cpu_seconds(pid), now_ns());
    let sampling = CancellationToken::new();
    let peak = measure::sample_peak_rss(pid, sampling.clone());
    tokio::time::sleep(Duration::from_nanos(window.end.saturating_sub(now_ns()))).await;
    let cpu = measure::cpu_seconds(pid) - cpu_start;
    // Divided by the time between the two readings, which a loaded machine may stretch.
    let cpu_s = (now_ns().saturating_sub(cpu_from)) as f64 / 1e9;
    sampling.cancel();
    let peak_kib = peak.await.unwrap_or(0);

    let mut errors = Vec::new();
    let mut expected = 0u64;
    let mut sent = 0u64;
    let mut kept_publishers = Vec::new();
    for (room, handle) in sending.into_iter().enumerate() {
        let (in_window, error, publisher) = handle.await?;
        sent += in_window;
        expected += in_window * per_room[room];
        errors.extend(error);
        errors.extend(publisher.refused().map(|e| format!("refused: {e}")));
        kept_publishers.push(publisher);
    }
    let drain_until = now_ns() + clock::ns(Duration::from_millis(spec.drain_ms));
    while delivered.load(Ordering::Relaxed) < expected && now_ns() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let mut latencies = Vec::new();
    let (mut in_window, mut arrived) = (0u64, 0u64);
    for handle in receiving {
        let (got, error) = handle.await?;
        latencies.extend(got.latencies);
        in_window += got.in_window;
        arrived += got.arrived_in_window;
        if errors.len() < 5 {
            errors.extend(error);
        }
    }
    drop(kept_publishers);
    let window_s = spec.window_ms as f64 / 1000.0;
    Ok(FanoutRun {
        system: server.system,
        spec: spec.clone(),
        offered_deliveries_per_s: spec.offered(),
        sent,
        expected,
        delivered: in_window,
        lost: expected.saturating_sub(in_window),
        deliveries_per_s: arrived as f64 / window_s,
        latency: Latency::of(latencies),
        server_cpu_percent: 100.0 * cpu / cpu_s.max(1e-9),
        server_peak_rss_mib: peak_kib as f64 / 1024.0,
        errors,
    })
}
