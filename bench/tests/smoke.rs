//! The benchmark harness with tiny numbers, so it cannot rot: `escape-load all --smoke` runs every
//! workload against the real `escape-server` binary and every peer installed here
//! (`bench/install.sh`; CI installs them), then `escape-load report` renders the page from the
//! results. Checks that every workload measured something and lost nothing, not how fast it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The server binary built beside this package's binary (the test command builds the workspace).
fn server_bin() -> PathBuf {
    let load = PathBuf::from(env!("CARGO_BIN_EXE_escape-load"));
    let server = load.with_file_name("escape-server");
    if !server.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "escape-server"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building escape-server");
    }
    server
}

fn run(args: &[&str], work: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_escape-load"))
        .args(args)
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--work")
        .arg(work)
        .output()
        .expect("escape-load");
    assert!(
        output.status.success(),
        "escape-load {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn number(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

#[test]
fn every_workload_runs_against_every_installed_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().join("results.json");
    let results_arg = results.to_str().expect("path");
    run(&["all", "--smoke", "--out", results_arg], dir.path());
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("json");
    let versions = r["versions"].as_object().expect("versions");
    assert!(versions.contains_key("escape"));
    let installed = |name: &str| versions.contains_key(name);

    // Fan-out: every system ran its step, and at this load every delivery arrived.
    let brokers: Vec<&str> = ["escape", "mosquitto", "nats"]
        .into_iter()
        .filter(|s| installed(s))
        .collect();
    for system in &brokers {
        for table in ["sweep", "half_load"] {
            let run = r[table]
                .as_array()
                .expect(table)
                .iter()
                .find(|run| run["system"] == *system)
                .unwrap_or_else(|| panic!("no {table} run for {system}"));
            assert!(number(run, "/expected") > 0.0, "{system}: {run}");
            assert_eq!(number(run, "/lost"), 0.0, "{system} lost deliveries: {run}");
            assert_eq!(run["errors"], Value::Array(Vec::new()), "{system}: {run}");
            assert!(number(run, "/latency/p99_ms") > 0.0);
            assert!(number(run, "/server_peak_rss_mib") > 0.0);
        }
        let idle = r["idle"]
            .as_array()
            .expect("idle")
            .iter()
            .find(|run| run["system"] == *system)
            .expect("idle run");
        assert!(number(idle, "/rss_loaded_kib") > 0.0, "{idle}");
    }

    // Handshakes: Escape's listener, and nginx's when installed, completed every one.
    for system in ["escape", "nginx"].into_iter().filter(|s| installed(s)) {
        let storm = r["storm"]
            .as_array()
            .expect("storm")
            .iter()
            .find(|run| run["system"] == system)
            .expect("storm run");
        assert!(number(storm, "/handshakes") > 0.0, "{storm}");
        assert_eq!(number(storm, "/failures"), 0.0, "{storm}");
    }

    // Durable sends were acknowledged; the disk was measured; files were encrypted both ways.
    assert!(number(&r, "/durable/acked") > 0.0);
    assert_eq!(r["durable"]["errors"], Value::Array(Vec::new()));
    assert!(number(&r, "/durable/fsyncs_per_s") > 0.0);
    assert!(
        number(&r, "/durable/fsync_probes/0") > 0.0,
        "probed before the run"
    );
    assert!(number(&r, "/durable/fsync_probes/1") > 0.0, "and after it");
    assert!(number(&r, "/files/escape_encrypt_mib_s") > 0.0);
    assert!(number(&r, "/files/escape_decrypt_mib_s") > 0.0);
    assert!(number(&r, "/files/share_mib_s") > 0.0);
    assert!(number(&r, "/files/fetch_mib_s") > 0.0);
    assert_eq!(r["targets"].as_array().expect("targets").len(), 6);

    // The page renders from these results with every placeholder filled, and the plots exist.
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md.in");
    let page = dir.path().join("BENCHMARKS.md");
    let plots = dir.path().join("plots");
    run(
        &[
            "report",
            "--results",
            results_arg,
            "--template",
            template.to_str().expect("path"),
            "--out",
            page.to_str().expect("path"),
            "--plots",
            plots.to_str().expect("path"),
        ],
        dir.path(),
    );
    let page = std::fs::read_to_string(page).expect("page");
    assert!(!page.contains("{{"), "a placeholder was left");
    assert!(page.contains("SMOKE RUN"));
    assert!(page.contains("| escape |"));
    for plot in ["fanout-p50.svg", "fanout-p99.svg"] {
        let svg = std::fs::read_to_string(plots.join(plot)).expect("plot");
        assert!(svg.starts_with("<svg") && svg.contains("escape"), "{plot}");
        assert!(
            page.contains(&format!("](plots/{plot})")),
            "the page links {plot} relative to itself"
        );
    }
}
