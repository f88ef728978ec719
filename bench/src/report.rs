//! BENCHMARKS.md from a results file: the prose is a template (`bench/BENCHMARKS.md.in`), every
//! figure comes from the results, and the plots are drawn from the same data. Nothing is typed
//! by hand, so the page always says what the last run measured.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, bail};
use plotters::prelude::*;

use crate::plan::Results;
use crate::targets::System;
use crate::workload::fanout::FanoutRun;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "not measured".into(), |v| format!("{v:.digits$}"))
}

/// A number with thin grouping, as the rest of the documentation writes them.
fn int(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn blocks(r: &Results, plots: &str) -> BTreeMap<&'static str, String> {
    let mut b = BTreeMap::new();
    let m = &r.machine;
    b.insert(
        "machine",
        format!(
            "{} CPUs ({}), {:.1} GiB, {}, {}{}",
            m.cpus,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            m.rustc,
            if r.smoke {
                " — SMOKE RUN: tiny sizes, figures meaningless"
            } else {
                ""
            }
        ),
    );
    let mut versions = String::new();
    for (system, version) in &r.versions {
        let _ = writeln!(versions, "- {system}: {version}");
    }
    for skipped in &r.skipped {
        let _ = writeln!(versions, "- not run: {skipped}");
    }
    b.insert("versions", versions);

    let mut t =
        String::from("| target | required | measured | met | figures |\n|---|---|---:|---|---|\n");
    for c in &r.targets {
        let met = match c.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {met} | {} |",
            c.name,
            c.required,
            opt(c.measured, 2),
            c.detail
        );
    }
    b.insert("targets", t);

    let f = &r.sizes.fanout;
    b.insert(
        "fanout_setup",
        format!(
            "{} following clients over {} rooms ({} per room), one publisher per room, {}-byte messages, \
             {} ms warm-up, {} ms window, up to {} ms drain",
            f.clients,
            f.rooms,
            f.clients / f.rooms.max(1),
            f.size,
            f.warmup_ms,
            f.window_ms,
            f.drain_ms
        ),
    );
    b.insert("sweep", fanout_table(&r.sweep));
    b.insert("half_load", fanout_table(&r.half_load));
    let mut peaks = String::from("| system | peak deliveries/s |\n|---|---:|\n");
    for (system, peak) in &r.peak {
        let at_least = if r.at_sweep_ceiling.contains(system) {
            "at least "
        } else {
            ""
        };
        let _ = writeln!(peaks, "| {system} | {at_least}{} |", int(*peak));
    }
    b.insert("peaks", peaks);

    let mut s = String::from(
        "| system | concurrency | handshakes/s | failed | server CPU | server CPU per handshake |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for run in &r.storm {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} % | {:.0} µs |",
            run.system.name(),
            run.spec.concurrency,
            int(run.handshakes_per_s),
            run.failures,
            run.server_cpu_percent,
            run.server_cpu_us_per_handshake
        );
    }
    b.insert("storm", s);

    let mut i = String::from(
        "| system | connections | resident set, base | with them | per connection |\n|---|---:|---:|---:|---:|\n",
    );
    for run in &r.idle {
        let _ = writeln!(
            i,
            "| {} | {} | {} KiB | {} KiB | {} bytes |",
            run.system.name(),
            int(run.connections as f64),
            int(run.rss_base_kib as f64),
            int(run.rss_loaded_kib as f64),
            int(run.bytes_per_connection)
        );
    }
    b.insert("idle", i);

    let d = r.durable.as_ref().map_or_else(
        || "not measured\n".to_owned(),
        |d| {
            format!(
                "| connections × in flight | acked messages/s | ack p50 | ack p99 | disk fsyncs/s (4 KiB) | ratio |\n\
                 |---|---:|---:|---:|---:|---:|\n| {} × {} | {} | {:.2} ms | {:.2} ms | {}{} | {:.1}× |\n{}",
                d.spec.connections,
                d.spec.in_flight,
                int(d.acked_per_s),
                d.ack_latency.p50_ms,
                d.ack_latency.p99_ms,
                int(d.fsyncs_per_s),
                match d.fsync_probes.as_slice() {
                    [before, after] => format!(" (before {}, after {})", int(*before), int(*after)),
                    _ => String::new(),
                },
                d.ratio_to_fsync,
                if d.errors.is_empty() { String::new() } else { format!("\nErrors: {}\n", d.errors.join("; ")) }
            )
        },
    );
    b.insert("durable", d);

    let files = r.files.as_ref().map_or_else(
        || "not measured\n".to_owned(),
        |f| {
            format!(
                "| {} MiB file | encrypt | decrypt |\n|---|---:|---:|\n| Escape (client library) | {:.0} MiB/s | {:.0} MiB/s |\n\
                 | age tool ({}) | {} MiB/s | {} MiB/s |\n\n\
                 | through the server | share (encrypt + upload) | fetch (download + decrypt + check) |\n|---|---:|---:|\n\
                 | Escape, over mutual TLS on 127.0.0.1 | {:.0} MiB/s | {:.0} MiB/s |\n",
                f.bytes / (1024 * 1024),
                f.escape_encrypt_mib_s,
                f.escape_decrypt_mib_s,
                f.age_version.as_deref().unwrap_or("not installed"),
                opt(f.age_encrypt_mib_s, 0),
                opt(f.age_decrypt_mib_s, 0),
                f.share_mib_s,
                f.fetch_mib_s
            )
        },
    );
    b.insert("files", files);

    let mut micro =
        String::from("| benchmark | mean | median | per element |\n|---|---:|---:|---:|\n");
    for m in &r.micro {
        let per = m
            .elements
            .filter(|e| *e > 0)
            .map(|e| {
                format!(
                    "{:.0} ns ({}/s)",
                    m.mean_ns / e as f64,
                    int(1e9 * e as f64 / m.mean_ns)
                )
            })
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            micro,
            "| `{}` | {} | {} | {per} |",
            m.id,
            duration(m.mean_ns),
            duration(m.median_ns)
        );
    }
    if r.micro.is_empty() {
        micro.push_str("| (not run) | | | |\n");
    }
    b.insert("micro", micro);
    b.insert("plots", plots.to_owned());
    b
}

fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fanout_table(runs: &[FanoutRun]) -> String {
    let mut t = String::from(
        "| system | offered/s | delivered/s | p50 | p99 | p99.9 | lost | server CPU | server peak RSS | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for run in runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {:.0} % | {:.0} MiB | {} |",
            run.system.name(),
            int(run.offered_deliveries_per_s),
            int(run.deliveries_per_s),
            run.latency.p50_ms,
            run.latency.p99_ms,
            run.latency.p999_ms,
            run.lost,
            run.server_cpu_percent,
            run.server_peak_rss_mib,
            run.errors
                .first()
                .map(|e| e.chars().take(80).collect::<String>())
                .unwrap_or_default()
        );
    }
    t
}

/// Fills the template: every `{{name}}` must be a block the results provide.
pub fn render(template: &str, r: &Results, plots: &str) -> anyhow::Result<String> {
    let blocks = blocks(r, plots);
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").context("unclosed {{ in the template")?;
        let name = after[..close].trim();
        let Some(block) = blocks.get(name) else {
            bail!("the template names {{{{{name}}}}}, which the results do not provide");
        };
        out.push_str(block.trim_end_matches('\n'));
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn colour(system: System) -> RGBColor {
    match system {
        System::Escape => RGBColor(0xd9, 0x48, 0x1f),
        System::Mosquitto => RGBColor(0x1f, 0x6f, 0xd9),
        System::Nats => RGBColor(0x2a, 0x9d, 0x3f),
        System::Nginx => RGBColor(0x70, 0x70, 0x70),
    }
}

/// Latency (one percentile, log scale) against the delivery rate reached, one line per system.
pub fn latency_plot(path: &Path, runs: &[FanoutRun], percentile: &str) -> anyhow::Result<()> {
    let pick = |run: &FanoutRun| match percentile {
        "p50" => run.latency.p50_ms,
        "p999" => run.latency.p999_ms,
        _ => run.latency.p99_ms,
    };
    let points: Vec<(System, f64, f64)> = runs
        .iter()
        .filter(|r| r.latency.samples > 0)
        .map(|r| (r.system, r.deliveries_per_s / 1000.0, pick(r).max(0.01)))
        .collect();
    let x_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let y_max = points.iter().map(|p| p.2).fold(1.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{percentile} latency vs deliveries per second"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (0.01..y_max).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("thousand deliveries per second")
        .y_desc(format!("{percentile} latency, ms (log)"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for system in [System::Escape, System::Mosquitto, System::Nats] {
        let series: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.0 == system)
            .map(|p| (p.1, p.2))
            .collect();
        if series.is_empty() {
            continue;
        }
        let style = colour(system);
        chart
            .draw_series(LineSeries::new(series.clone(), style.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(system.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        chart
            .draw_series(
                series
                    .into_iter()
                    .map(|p| Circle::new(p, 3, style.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Writes the plots next to `out` under `plot_dir` and the page itself.
pub fn write(results: &Results, template: &str, out: &Path, plot_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(plot_dir)?;
    let page_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut links = String::new();
    for percentile in ["p50", "p99"] {
        let file = plot_dir.join(format!("fanout-{percentile}.svg"));
        latency_plot(&file, &results.sweep, percentile)?;
        let relative = relative_to(&file, page_dir);
        let _ = writeln!(links, "![{percentile} latency against load]({relative})\n");
    }
    // Targets are judged again from the figures, so a change of wording needs no new run.
    let mut results = results.clone();
    results.targets = crate::plan::check_targets(&results);
    let page = render(template, &results, &links)?;
    std::fs::write(out, page).with_context(|| format!("{}", out.display()))?;
    Ok(())
}

fn relative_to(file: &Path, dir: &Path) -> String {
    let (file, dir) = (
        std::path::absolute(file).unwrap_or_else(|_| file.to_owned()),
        std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()),
    );
    file.strip_prefix(&dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(int(0.0), "0");
        assert_eq!(int(999.4), "999");
        assert_eq!(int(1000.0), "1,000");
        assert_eq!(int(1_234_567.0), "1,234,567");
    }
}
