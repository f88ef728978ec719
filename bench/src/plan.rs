//! The whole benchmark as one plan: every workload against every system it applies to, in an
//! order that lets later steps use earlier results (half load is half of mosquitto's peak), the
//! targets of the project checked against what was measured, and everything written as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::targets::{Server, Setup, System};
use crate::workload::durable::{self, DurableRun, DurableSpec};
use crate::workload::fanout::{self, FanoutRun, FanoutSpec};
use crate::workload::files::{self, FilesRun};
use crate::workload::idle::{self, IdleRun};
use crate::workload::storm::{self, StormRun, StormSpec};

/// The sizes of one run of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sizes {
    pub fanout: FanoutSpec,
    /// Offered deliveries per second of the sweep, lowest first; it stops after the first load a
    /// system does not keep up with (the steps are finer where the systems measured saturate).
    pub sweep: Vec<f64>,
    pub storm: StormSpec,
    pub idle_connections: usize,
    pub durable: DurableSpec,
    pub file_mib: u64,
    /// A pause before each system is measured, after the disk's dirty pages are written back
    /// (see [`start_quiet`]).
    #[serde(default)]
    pub settle_ms: u64,
    /// How many times each system runs at half load, taking turns; the run with the median p99
    /// is reported (one run's p99 can be several times the next one's on two shared cores).
    #[serde(default = "one")]
    pub half_load_rounds: usize,
}

fn one() -> usize {
    1
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            fanout: FanoutSpec {
                clients: 500,
                rooms: 10,
                size: 256,
                rate: 0.0,
                warmup_ms: 1000,
                window_ms: 4000,
                drain_ms: 3000,
            },
            sweep: vec![
                10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0, 60_000.0, 80_000.0, 100_000.0,
                150_000.0, 200_000.0, 300_000.0, 400_000.0, 600_000.0, 800_000.0,
            ],
            storm: StormSpec {
                concurrency: 32,
                duration_ms: 5000,
            },
            idle_connections: 2000,
            durable: DurableSpec {
                connections: 16,
                in_flight: 64,
                size: 256,
                duration_ms: 5000,
            },
            file_mib: 512,
            settle_ms: 2000,
            half_load_rounds: 5,
        }
    }

    /// Tiny numbers, so the test command runs every workload against every installed system in
    /// seconds and the harness cannot rot.
    pub fn smoke() -> Self {
        Self {
            fanout: FanoutSpec {
                clients: 12,
                rooms: 3,
                size: 64,
                rate: 0.0,
                warmup_ms: 200,
                window_ms: 600,
                drain_ms: 3000,
            },
            sweep: vec![200.0],
            storm: StormSpec {
                concurrency: 4,
                duration_ms: 400,
            },
            idle_connections: 40,
            durable: DurableSpec {
                connections: 2,
                in_flight: 8,
                size: 64,
                duration_ms: 500,
            },
            file_mib: 2,
            settle_ms: 0,
            half_load_rounds: 1,
        }
    }
}

/// One of the project's performance targets and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCheck {
    pub name: String,
    pub required: String,
    /// The measured ratio (or figure), if both sides could be measured.
    pub measured: Option<f64>,
    pub met: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
}

/// A micro-benchmark's estimate, read from criterion's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Micro {
    pub id: String,
    pub mean_ns: f64,
    pub median_ns: f64,
    /// Elements per iteration, when the benchmark declares a throughput.
    pub elements: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub smoke: bool,
    pub sizes: Sizes,
    pub machine: Machine,
    pub versions: BTreeMap<String, String>,
    pub skipped: Vec<String>,
    /// Every step of every system's sweep.
    pub sweep: Vec<FanoutRun>,
    /// Highest deliveries per second each system reached in its sweep while keeping up.
    pub peak: BTreeMap<String, f64>,
    /// Systems that kept up with the sweep's highest load: their peak is at least that much.
    #[serde(default)]
    pub at_sweep_ceiling: Vec<String>,
    /// Every system at half of mosquitto's peak (of Escape's when mosquitto could not run).
    pub half_load: Vec<FanoutRun>,
    pub storm: Vec<StormRun>,
    pub idle: Vec<IdleRun>,
    pub durable: Option<DurableRun>,
    pub files: Option<FilesRun>,
    pub micro: Vec<Micro>,
    pub targets: Vec<TargetCheck>,
}

fn read_first_line(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with(key)).map(str::to_owned))
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_default()
}

pub fn machine() -> Machine {
    let memory_kib: f64 = read_first_line("/proc/meminfo", "MemTotal")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let command = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: read_first_line("/proc/cpuinfo", "model name"),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel: command("uname", &["-sr"]),
        rustc: command("rustc", &["--version"]),
    }
}

/// Reads every estimate criterion left under `dir` (target/criterion).
pub fn read_micro(dir: &Path) -> Vec<Micro> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    if let Some(micro) = read_estimate(&path) {
                        found.push(micro);
                    }
                } else {
                    stack.push(path);
                }
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn read_estimate(new: &Path) -> Option<Micro> {
    let json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(name)).ok()?).ok()
    };
    let benchmark = json("benchmark.json")?;
    let estimates = json("estimates.json")?;
    Some(Micro {
        id: benchmark.get("full_id")?.as_str()?.to_owned(),
        mean_ns: estimates.pointer("/mean/point_estimate")?.as_f64()?,
        median_ns: estimates.pointer("/median/point_estimate")?.as_f64()?,
        elements: benchmark
            .pointer("/throughput/Elements")
            .and_then(|v| v.as_u64()),
    })
}

fn say(line: impl AsRef<str>) {
    eprintln!("escape-load: {}", line.as_ref());
}

/// Starts `system` once the machine is quiet: what the step before left behind (the
/// micro-benchmarks' stores, the last system's data, the kernel writing them back) must not
/// be measured as the next system's cost. The disk's dirty pages are written back, then the
/// server starts, then a pause lets its start-up work and every background thread go idle.
async fn start_quiet(
    system: System,
    setup: &Setup,
    sizes: &Sizes,
    rooms: usize,
) -> anyhow::Result<Server> {
    if sizes.settle_ms > 0 {
        tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await??;
    }
    let server = Server::start(system, setup, rooms).await?;
    tokio::time::sleep(std::time::Duration::from_millis(sizes.settle_ms)).await;
    Ok(server)
}

/// Runs the sweep of one system; returns its steps.
async fn sweep(system: System, setup: &Setup, sizes: &Sizes) -> anyhow::Result<Vec<FanoutRun>> {
    let server = start_quiet(system, setup, sizes, sizes.fanout.rooms).await?;
    let mut steps = Vec::new();
    for &load in &sizes.sweep {
        let spec = sizes.fanout.for_deliveries(load);
        let step = fanout::run(&server, &spec).await?;
        say(format!(
            "fan-out {}: offered {:.0}/s, delivered {:.0}/s, p99 {:.2} ms, lost {}, cpu {:.0}%{}",
            system.name(),
            step.offered_deliveries_per_s,
            step.deliveries_per_s,
            step.latency.p99_ms,
            step.lost,
            step.server_cpu_percent,
            step.errors
                .first()
                .map(|e| format!(", {e}"))
                .unwrap_or_default()
        ));
        let kept_up = step.kept_up();
        steps.push(step);
        if !kept_up {
            break;
        }
    }
    Ok(steps)
}

pub async fn run(
    setup: &Setup,
    sizes: Sizes,
    smoke: bool,
    micro: Option<PathBuf>,
) -> anyhow::Result<Results> {
    let mut skipped = Vec::new();
    let mut available = Vec::new();
    let mut versions = BTreeMap::new();
    for system in [
        System::Escape,
        System::Mosquitto,
        System::Nats,
        System::Nginx,
    ] {
        match system.missing() {
            Some(why) => skipped.push(format!("{}: {why}", system.name())),
            None => {
                available.push(system);
                versions.insert(system.name().to_owned(), system.version(&setup.server_bin));
            }
        }
    }
    let has = |s: System| available.contains(&s);
    let mut results = Results {
        smoke,
        sizes: sizes.clone(),
        machine: machine(),
        versions,
        skipped,
        sweep: Vec::new(),
        peak: BTreeMap::new(),
        at_sweep_ceiling: Vec::new(),
        half_load: Vec::new(),
        storm: Vec::new(),
        idle: Vec::new(),
        durable: None,
        files: None,
        micro: micro.as_deref().map(read_micro).unwrap_or_default(),
        targets: Vec::new(),
    };

    let brokers: Vec<System> = [System::Escape, System::Mosquitto, System::Nats]
        .into_iter()
        .filter(|s| has(*s))
        .collect();
    for &system in &brokers {
        let steps = sweep(system, setup, &sizes).await?;
        // The most delivered while keeping up: a step that lost messages or fell behind does
        // not count, whatever it pushed through.
        let peak = steps
            .iter()
            .filter(|s| s.kept_up())
            .map(|s| s.deliveries_per_s)
            .fold(0.0, f64::max);
        if steps.last().is_some_and(FanoutRun::kept_up) {
            results.at_sweep_ceiling.push(system.name().to_owned());
        }
        results.peak.insert(system.name().to_owned(), peak);
        results.sweep.extend(steps);
    }
    let reference = results
        .peak
        .get("mosquitto")
        .or_else(|| results.peak.get("escape"))
        .copied()
        .unwrap_or(0.0);
    let mut rounds: BTreeMap<&str, Vec<FanoutRun>> = BTreeMap::new();
    for round in 1..=sizes.half_load_rounds.max(1) {
        for &system in brokers.iter().filter(|_| reference > 0.0) {
            let server = start_quiet(system, setup, &sizes, sizes.fanout.rooms).await?;
            let spec = sizes.fanout.for_deliveries(reference / 2.0);
            let run = fanout::run(&server, &spec).await?;
            say(format!(
                "half load {} (round {round}): {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                system.name(),
                run.deliveries_per_s,
                run.latency.p50_ms,
                run.latency.p99_ms
            ));
            rounds.entry(system.name()).or_default().push(run);
        }
    }
    for &system in &brokers {
        let Some(mut runs) = rounds.remove(system.name()) else {
            continue;
        };
        runs.sort_by(|a, b| a.latency.p99_ms.total_cmp(&b.latency.p99_ms));
        let median = runs.swap_remove(runs.len() / 2);
        results.half_load.push(median);
    }

    for system in [System::Escape, System::Nginx]
        .into_iter()
        .filter(|s| has(*s))
    {
        let server = start_quiet(system, setup, &sizes, 1).await?;
        let run = storm::run(&server, &sizes.storm).await?;
        say(format!(
            "handshakes {}: {:.0}/s ({} failed)",
            system.name(),
            run.handshakes_per_s,
            run.failures
        ));
        results.storm.push(run);
    }

    for &system in &brokers {
        let server = start_quiet(system, setup, &sizes, sizes.fanout.rooms).await?;
        let run = idle::run(&server, sizes.idle_connections, sizes.fanout.rooms).await?;
        say(format!(
            "idle {}: {:.0} bytes per connection",
            system.name(),
            run.bytes_per_connection
        ));
        results.idle.push(run);
    }

    let server = start_quiet(System::Escape, setup, &sizes, sizes.durable.connections).await?;
    let run = durable::run(&server, &sizes.durable).await?;
    say(format!(
        "durable: {:.0} acked/s, disk {:.0} fsync/s",
        run.acked_per_s, run.fsyncs_per_s
    ));
    results.durable = Some(run);
    drop(server);

    let server = start_quiet(System::Escape, setup, &sizes, 1).await?;
    let run = files::run(&server, server.dir.path(), sizes.file_mib).await?;
    say(format!(
        "files: encrypt escape {:.0} MiB/s, age {:?} MiB/s; share {:.0} MiB/s, fetch {:.0} MiB/s",
        run.escape_encrypt_mib_s, run.age_encrypt_mib_s, run.share_mib_s, run.fetch_mib_s
    ));
    drop(server);
    results.files = Some(run);

    results.targets = check_targets(&results);
    Ok(results)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn target(
    name: &str,
    required: &str,
    measured: Option<f64>,
    met: impl Fn(f64) -> bool,
    detail: String,
) -> TargetCheck {
    TargetCheck {
        name: name.to_owned(),
        required: required.to_owned(),
        measured,
        met: measured.map(met),
        detail,
    }
}

/// The targets of issue 9, each as a ratio (or a figure) and whether it is met.
pub fn check_targets(r: &Results) -> Vec<TargetCheck> {
    let peak = |s: &str| r.peak.get(s).copied();
    let show = |v: Option<f64>, unit: &str| {
        v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.0}{unit}"))
    };
    let half_p99 = |s: System| {
        r.half_load
            .iter()
            .find(|run| run.system == s)
            .map(|run| run.latency.p99_ms)
    };
    let storm = |s: System| {
        r.storm
            .iter()
            .find(|run| run.system == s)
            .map(|run| run.handshakes_per_s)
    };
    let idle = r
        .idle
        .iter()
        .find(|run| run.system == System::Escape)
        .map(|run| run.bytes_per_connection);
    let files = r.files.as_ref();
    vec![
        target(
            "fan-out with the per-delivery check, deliveries/s vs mosquitto",
            ">= 1.6x",
            ratio(peak("escape"), peak("mosquitto")),
            |x| x >= 1.6,
            format!(
                "escape {}, mosquitto {}",
                show(peak("escape"), "/s"),
                show(peak("mosquitto"), "/s")
            ),
        ),
        target(
            "p99 latency at half load vs mosquitto",
            "<= 1.5x",
            ratio(half_p99(System::Escape), half_p99(System::Mosquitto)),
            |x| x <= 1.5,
            format!(
                "escape {}, mosquitto {}",
                show(half_p99(System::Escape), " ms"),
                show(half_p99(System::Mosquitto), " ms")
            ),
        ),
        target(
            "memory per idle connection (bytes)",
            "<= 20000",
            idle,
            |x| x <= 20_000.0,
            "resident set per connected, subscribed, silent client".into(),
        ),
        target(
            "full mutual-TLS handshakes/s vs nginx",
            ">= 1.3x",
            ratio(storm(System::Escape), storm(System::Nginx)),
            |x| x >= 1.3,
            format!(
                "escape {}, nginx {}",
                show(storm(System::Escape), "/s"),
                show(storm(System::Nginx), "/s")
            ),
        ),
        target(
            "acked durable messages/s vs the disk's fsyncs/s",
            ">= 20x",
            r.durable.as_ref().map(|d| d.ratio_to_fsync),
            |x| x >= 20.0,
            r.durable
                .as_ref()
                .map(|d| {
                    format!(
                        "{:.0} acked/s, {:.0} fsync/s",
                        d.acked_per_s, d.fsyncs_per_s
                    )
                })
                .unwrap_or_default(),
        ),
        target(
            "file encryption, one stream, vs the age tool",
            ">= 1.0x",
            ratio(
                files.map(|f| f.escape_encrypt_mib_s),
                files.and_then(|f| f.age_encrypt_mib_s),
            ),
            |x| x >= 1.0,
            files
                .map(|f| {
                    format!(
                        "escape {:.0} MiB/s, age {}",
                        f.escape_encrypt_mib_s,
                        show(f.age_encrypt_mib_s, " MiB/s")
                    )
                })
                .unwrap_or_default(),
        ),
    ]
}
