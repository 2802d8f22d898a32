//! TEMPORARY latency profile (issue 16 p99 work): stage timings in microseconds,
//! summarised every 5 s to `$RELAY_PROFILE.<pid>` when that variable is set.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

struct Profile {
    path: String,
    stages: Mutex<BTreeMap<&'static str, Vec<u64>>>,
}

static PROFILE: OnceLock<Option<Profile>> = OnceLock::new();

fn get() -> Option<&'static Profile> {
    PROFILE
        .get_or_init(|| {
            let path = std::env::var("RELAY_PROFILE").ok()?;
            let path = format!("{path}.{}", std::process::id());
            std::thread::spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                dump();
            });
            Some(Profile {
                path,
                stages: Mutex::default(),
            })
        })
        .as_ref()
}

/// Whether profiling is on.
pub fn on() -> bool {
    get().is_some()
}

/// Wall clock, µs.
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Records one sample.
pub fn record(stage: &'static str, us: u64) {
    if let Some(p) = get() {
        p.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(stage)
            .or_default()
            .push(us);
    }
}

/// Records the time since `since`.
pub fn since(stage: &'static str, since: std::time::Instant) {
    if on() {
        record(stage, since.elapsed().as_micros() as u64);
    }
}

fn dump() {
    let Some(p) = get() else { return };
    let stages = std::mem::take(&mut *p.stages.lock().unwrap_or_else(|e| e.into_inner()));
    let mut out = format!("--- {}\n", wall_us() / 1_000_000);
    for (name, mut v) in stages {
        v.sort_unstable();
        let pct = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        let mean = v.iter().sum::<u64>() / v.len() as u64;
        out.push_str(&format!(
            "{name:<24} n={:<7} mean={:<7} p50={:<7} p90={:<7} p99={:<7} max={}\n",
            v.len(),
            mean,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        ));
    }
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.path)
    {
        let _ = f.write_all(out.as_bytes());
    }
}
