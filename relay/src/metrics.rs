//! Prometheus metrics (X8) through the `metrics` facade and
//! `metrics-exporter-prometheus`: one recorder per process (tests start several
//! relays in one process; their counters add up), rendered at `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Webhooks by `kind` (`inbound`, `status`) and `result` (`logged`, `duplicate`,
/// `bad_signature`, `malformed`, `error`).
pub const WEBHOOKS: &str = "relay_webhooks_total";
/// Events appended to the log, by `kind`.
pub const EVENTS: &str = "relay_events_appended_total";
/// Sends by `outcome` (`accepted`, `failed`, `unknown`).
pub const SENDS: &str = "relay_sends_total";
/// Refused sends by `code` (limits, allow-list).
pub const SENDS_REFUSED: &str = "relay_sends_refused_total";
/// Open event streams.
pub const SSE_CLIENTS: &str = "relay_sse_clients";
/// Doorbells by `result` (`sent`, `failed`, `dropped`).
pub const DOORBELLS: &str = "relay_doorbells_total";
/// Seconds from a webhook's arrival to its events being durable.
pub const WEBHOOK_LATENCY: &str = "relay_webhook_to_event_seconds";
/// Sends reconciled after a restart, by `result` (`found`, `not_found_at_provider`, ...).
pub const RECONCILED: &str = "relay_sends_reconciled_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(WEBHOOK_LATENCY.to_owned()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render an
            // empty registry of our own rather than fail.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// A webhook handled.
pub fn webhook(kind: &'static str, result: &'static str) {
    metrics::counter!(WEBHOOKS, "kind" => kind, "result" => result).increment(1);
}

/// A webhook's events are durable, `seconds` after it arrived.
pub fn webhook_latency(kind: &'static str, seconds: f64) {
    metrics::histogram!(WEBHOOK_LATENCY, "kind" => kind).record(seconds);
}

/// An event appended.
pub fn event_appended(kind: &'static str) {
    metrics::counter!(EVENTS, "kind" => kind).increment(1);
}

/// A send's outcome logged.
pub fn send(outcome: &'static str) {
    metrics::counter!(SENDS, "outcome" => outcome).increment(1);
}

/// A send refused before the sequencer (a limit).
pub fn send_refused(code: &'static str) {
    metrics::counter!(SENDS_REFUSED, "code" => code).increment(1);
}

/// A doorbell sent, failed or dropped.
pub fn doorbell(result: &'static str) {
    metrics::counter!(DOORBELLS, "result" => result).increment(1);
}

/// A reconciliation's result.
pub fn reconciled(result: &'static str) {
    metrics::counter!(RECONCILED, "result" => result).increment(1);
}

/// Counts an open event stream while it lives.
pub struct SseClient(());

impl SseClient {
    /// One more stream.
    pub fn open() -> Self {
        metrics::gauge!(SSE_CLIENTS).increment(1.0);
        Self(())
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        metrics::gauge!(SSE_CLIENTS).decrement(1.0);
    }
}
