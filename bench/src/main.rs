//! `escape-load`: Escape's load generator. It starts the systems under test from their real
//! binaries (Escape, and the peers a user would otherwise pick: mosquitto, nats-server, nginx),
//! drives them with the same clients over mutual TLS on 127.0.0.1, and reports what it measured
//! as JSON. `escape-load all` is the whole plan behind BENCHMARKS.md; `escape-load report` turns
//! its results into the page. Runs are bounded in count and time and never leave loopback.
#![forbid(unsafe_code)]

mod clock;
mod measure;
mod pki;
mod plan;
mod report;
mod targets;
mod workload;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use targets::{Server, Setup, System};
use workload::durable::DurableSpec;
use workload::fanout::FanoutSpec;
use workload::storm::StormSpec;

#[derive(Debug, Parser)]
#[command(name = "escape-load", version, about)]
struct Cli {
    /// The escape-server binary (default: next to this one).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// Where data folders and peer configurations go: on the disk being measured.
    #[arg(long, global = true)]
    work: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every workload against every installed system; writes the results as JSON.
    All {
        /// Tiny sizes: checks the harness end to end in seconds (the test command runs this).
        #[arg(long)]
        smoke: bool,
        /// criterion's output folder, whose estimates join the results.
        #[arg(long)]
        criterion: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes BENCHMARKS.md and its plots from a results file.
    Report {
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value = "bench/BENCHMARKS.md.in")]
        template: PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        #[arg(long, default_value = "bench/results")]
        plots: PathBuf,
    },
    /// Room fan-out at one rate: deliveries/s, latency percentiles, server CPU and peak RSS.
    Fanout {
        #[arg(long, value_enum, default_value = "escape")]
        system: System,
        #[command(flatten)]
        spec: FanoutArgs,
    },
    /// A connect storm: full mutual-TLS handshakes per second.
    Storm {
        #[arg(long, value_enum, default_value = "escape")]
        system: System,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 5000)]
        duration_ms: u64,
    },
    /// Memory per idle (connected, subscribed, silent) connection.
    Idle {
        #[arg(long, value_enum, default_value = "escape")]
        system: System,
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
    },
    /// Acknowledged (durable) messages per second against Escape, next to the disk's fsync rate.
    Durable {
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 64)]
        in_flight: u64,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 5000)]
        duration_ms: u64,
    },
    /// One file encrypted and decrypted beside the age tool, then shared and fetched through
    /// Escape.
    Files {
        /// The file's size.
        #[arg(long, default_value_t = 512)]
        mib: u64,
    },
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[arg(long, default_value_t = 500)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Payload bytes per message (at least 23: the send time is stamped in it).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Messages per second, all rooms together.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    #[arg(long, default_value_t = 4000)]
    window_ms: u64,
    #[arg(long, default_value_t = 3000)]
    drain_ms: u64,
}

fn print(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let here = std::env::current_exe()?
        .parent()
        .context("executable folder")?
        .to_owned();
    let setup = Setup {
        server_bin: cli.server_bin.unwrap_or_else(|| here.join("escape-server")),
        work: cli.work.unwrap_or_else(|| here.join("bench-work")),
    };
    match cli.command {
        Command::All {
            smoke,
            criterion,
            out,
        } => {
            let sizes = if smoke {
                plan::Sizes::smoke()
            } else {
                plan::Sizes::full()
            };
            let results = plan::run(&setup, sizes, smoke, criterion).await?;
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&results)?)
                .with_context(|| format!("{}", out.display()))?;
            eprintln!("escape-load: results written to {}", out.display());
        }
        Command::Report {
            results,
            template,
            out,
            plots,
        } => {
            let results: plan::Results = serde_json::from_str(
                &std::fs::read_to_string(&results)
                    .with_context(|| format!("{}", results.display()))?,
            )?;
            let template = std::fs::read_to_string(&template)
                .with_context(|| format!("{}", template.display()))?;
            report::write(&results, &template, &out, &plots)?;
            eprintln!("escape-load: wrote {}", out.display());
        }
        Command::Fanout { system, spec } => {
            let server = Server::start(system, &setup, spec.rooms).await?;
            let spec = FanoutSpec {
                clients: spec.clients,
                rooms: spec.rooms,
                size: spec.size,
                rate: spec.rate,
                warmup_ms: spec.warmup_ms,
                window_ms: spec.window_ms,
                drain_ms: spec.drain_ms,
            };
            print(&workload::fanout::run(&server, &spec).await?)?;
        }
        Command::Storm {
            system,
            concurrency,
            duration_ms,
        } => {
            let server = Server::start(system, &setup, 1).await?;
            let spec = StormSpec {
                concurrency,
                duration_ms,
            };
            print(&workload::storm::run(&server, &spec).await?)?;
        }
        Command::Idle {
            system,
            connections,
            rooms,
        } => {
            let server = Server::start(system, &setup, rooms).await?;
            print(&workload::idle::run(&server, connections, rooms).await?)?;
        }
        Command::Durable {
            connections,
            in_flight,
            size,
            duration_ms,
        } => {
            let server = Server::start(System::Escape, &setup, connections).await?;
            let spec = DurableSpec {
                connections,
                in_flight,
                size,
                duration_ms,
            };
            print(&workload::durable::run(&server, &spec).await?)?;
        }
        Command::Files { mib } => {
            let server = Server::start(System::Escape, &setup, 1).await?;
            print(&workload::files::run(&server, server.dir.path(), mib).await?)?;
        }
    }
    Ok(())
}
