//! Memory per idle connection: the server's resident set with many connected, subscribed and
//! silent clients, minus what it was with a few, divided by the difference in connections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::measure;
use crate::targets::{Server, System};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleRun {
    pub system: System,
    pub connections: usize,
    pub rss_base_kib: u64,
    pub rss_loaded_kib: u64,
    pub bytes_per_connection: f64,
}

/// Warm-up connections held during the base reading, so that what the first connections cost
/// once (thread pools, caches) is not charged to each.
const BASE: usize = 100;

/// The resident set averaged over half a second, after a second of quiet.
async fn settled_rss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sum = 0;
    for _ in 0..5 {
        sum += measure::rss_kib(pid);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sum / 5
}

pub async fn run(server: &Server, connections: usize, rooms: usize) -> anyhow::Result<IdleRun> {
    let pid = server.pid();
    let base = super::followers(server, BASE, rooms, 0).await?;
    let rss_base_kib = settled_rss(pid).await;
    let loaded = super::followers(server, connections, rooms, BASE).await?;
    let rss_loaded_kib = settled_rss(pid).await;
    drop((base, loaded));
    Ok(IdleRun {
        system: server.system,
        connections,
        rss_base_kib,
        rss_loaded_kib,
        bytes_per_connection: rss_loaded_kib.saturating_sub(rss_base_kib) as f64 * 1024.0
            / connections.max(1) as f64,
    })
}
