//! Prints the medians criterion saved for each group and function, and each
//! function's ratio to the group's floor (`baseline` or `raw`) both ways, as
//! a Markdown table: `time / floor` is the overhead (memory target ≤ 2),
//! `floor / time` the share of the floor's throughput (PostgreSQL target
//! ≥ 0.80).
//!
//! ```sh
//! cargo run -p referral-benches --bin criterion-summary -- [TARGET_DIR/criterion] [GROUP_PREFIX]
//! ```
//! In the PostgreSQL groups a "time" is wall time per operation with the
//! group's clients in flight, so ops/s is the throughput.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

fn median_ns(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new").join("estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "report"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() {
    let root = std::env::args().nth(1).map_or_else(
        || {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            PathBuf::from(target).join("criterion")
        },
        PathBuf::from,
    );
    let prefix = std::env::args().nth(2).unwrap_or_default();
    println!("| group | function | median | ops/s | time / floor | floor / time |");
    println!("|---|---|---:|---:|---:|---:|");
    // Group names with '/' are nested folders (criterion replaces '/' by '_').
    for group in subdirs(&root) {
        let gname = name(&group);
        if !gname.starts_with(&prefix) {
            continue;
        }
        let funcs: Vec<(String, f64)> = subdirs(&group)
            .into_iter()
            .filter_map(|f| Some((name(&f), median_ns(&f)?)))
            .collect();
        let floor = funcs
            .iter()
            .find(|(n, _)| n == "baseline" || n == "raw")
            .map(|(_, t)| *t);
        for (fname, t) in &funcs {
            let ratio = floor.map_or_else(String::new, |f| format!("{:.2} | {:.2}", t / f, f / t));
            let shown = if *t >= 1e6 {
                format!("{:.2} ms", t / 1e6)
            } else if *t >= 1e3 {
                format!("{:.2} µs", t / 1e3)
            } else {
                format!("{t:.0} ns")
            };
            println!("| {gname} | {fname} | {shown} | {:.0} | {ratio} |", 1e9 / t);
        }
    }
}
