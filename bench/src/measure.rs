//! What is read off the server under test while a workload runs (its CPU time and resident set,
//! from /proc, summed over the process and its children so that nginx's workers count), and the
//! latency summary every workload reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of /proc's CPU times (the kernel's USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process `pid` and its direct children.
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse().ok())) == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

/// Fields of /proc/PID/stat after the command name: state is [0], ppid [1], utime [11], stime [12].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// CPU seconds (user and system) used so far by the process tree.
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks: u64 = tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// Resident set of the process tree, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// Samples the server's resident set every 100 ms until stopped; returns the peak, in KiB.
pub fn sample_peak_rss(
    pid: u32,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = rss_kib(pid);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return peak.max(rss_kib(pid)),
                _ = tick.tick() => peak = peak.max(rss_kib(pid)),
            }
        }
    })
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles by rank over every sample (no histogram buckets: runs are bounded, so all
    /// samples fit in memory and the figures are exact).
    pub fn of(mut samples_ns: Vec<u64>) -> Self {
        if samples_ns.is_empty() {
            return Self::default();
        }
        samples_ns.sort_unstable();
        let n = samples_ns.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples_ns[rank] as f64 / 1e6
        };
        Self {
            samples: n as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: samples_ns[n - 1] as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ranks() {
        let latency = Latency::of((1..=1000).map(|ms| ms * 1_000_000).collect());
        assert_eq!(latency.samples, 1000);
        assert_eq!(latency.p50_ms, 500.0);
        assert_eq!(latency.p99_ms, 990.0);
        assert_eq!(latency.p999_ms, 999.0);
        assert_eq!(latency.max_ms, 1000.0);
        assert_eq!(Latency::of(Vec::new()).samples, 0);
    }

    #[test]
    fn this_process_is_measured() {
        let pid = std::process::id();
        assert!(rss_kib(pid) > 0);
        assert!(cpu_seconds(pid) >= 0.0);
    }
}
