//! Sends that never hang or double (X3). A send is a durable row: `queued` when the
//! sequencer accepts it, `calling` (committed) just before the provider call, removed
//! with its outcome logged as the `outbound` event. The provider is called here, by
//! a task of its own, never by the HTTP request: a client that disconnects changes
//! nothing, and a retry with the same `client_ref` waits for the same outcome.
//!
//! On start-up `queued` rows are sent and `calling` rows are reconciled with the
//! provider's message list (only an exact single match counts), never resent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sms_core::protocol::{SendAnswer, SendOutcome};
use sms_core::relay::{PendingSend, ProviderAnswer, SendPlan, SendStage};
use tokio::sync::{watch, Semaphore};

use crate::metrics;
use crate::provider::{OutboundSms, Provider, SendResult};
use crate::sequencer::Sequencer;

type Key = (String, String);

/// The send worker: provider calls, and the requests waiting for their outcomes.
pub struct Sends {
    seq: Sequencer,
    provider: Arc<dyn Provider>,
    calls: Arc<Semaphore>,
    /// Permits of `calls`.
    concurrency: u32,
    /// Set by a graceful stop: no provider call starts any more.
    stopping: std::sync::atomic::AtomicBool,
    waiters: Mutex<HashMap<Key, watch::Sender<Option<SendAnswer>>>>,
}

/// A request waiting for a send's outcome; its entry goes when the last waiter
/// does (a client that disconnects drops it).
pub struct Waiter {
    sends: Arc<Sends>,
    key: Key,
    rx: Option<watch::Receiver<Option<SendAnswer>>>,
}

impl Waiter {
    /// The outcome, if it comes within `wait`.
    pub async fn outcome(&mut self, wait: Duration) -> Option<SendAnswer> {
        let rx = self.rx.as_mut()?;
        match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
            Ok(Ok(answer)) => answer.clone(),
            _ => None,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut waiters = self.sends.lock();
        if waiters
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            waiters.remove(&self.key);
        }
    }
}

/// The answer for a send's outcome (the provider's own text stays in the log).
pub fn answer(client_ref: String, a: &ProviderAnswer, duplicate: bool) -> SendAnswer {
    SendAnswer {
        client_ref,
        outcome: a.outcome,
        message_sid: a.message_sid.clone(),
        error_code: a.error_code,
        reason: None,
        provider_error: match (a.outcome, a.error_code) {
            (SendOutcome::Failed, Some(_)) => Some("provider_refused".into()),
            (SendOutcome::Failed, None) => Some("provider_unreachable".into()),
            (SendOutcome::Unknown, _) => Some("provider_no_answer".into()),
            (SendOutcome::Accepted | SendOutcome::Pending, _) => None,
        },
        duplicate,
    }
}

/// The answer while the relay holds a send without an outcome.
pub fn pending(client_ref: String) -> SendAnswer {
    SendAnswer {
        client_ref,
        outcome: SendOutcome::Pending,
        message_sid: None,
        error_code: None,
        reason: None,
        provider_error: None,
        duplicate: false,
    }
}

pub(crate) fn outcome_name(o: SendOutcome) -> &'static str {
    match o {
        SendOutcome::Accepted => "accepted",
        SendOutcome::Failed => "failed",
        SendOutcome::Unknown => "unknown",
        SendOutcome::Pending => "pending",
    }
}

/// Attempts at marking a send `calling` when the commit fails (the row stays
/// `queued` for the next start otherwise).
const CALL_ATTEMPTS: u32 = 3;

impl Sends {
    /// A worker calling `provider` at most `concurrency` times at once.
    pub fn new(seq: Sequencer, provider: Arc<dyn Provider>, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            seq,
            provider,
            calls: Arc::new(Semaphore::new(concurrency.max(1))),
            concurrency: concurrency.clamp(1, u32::MAX as usize) as u32,
            stopping: std::sync::atomic::AtomicBool::new(false),
            waiters: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Sender<Option<SendAnswer>>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the outcome of `(seller, client_ref)`: call before asking the
    /// sequencer about the send, so an outcome logged after its answer is seen.
    pub fn wait(self: &Arc<Self>, seller: &str, client_ref: &str) -> Waiter {
        let key = (seller.to_owned(), client_ref.to_owned());
        let rx = self
            .lock()
            .entry(key.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        Waiter {
            sends: self.clone(),
            key,
            rx: Some(rx),
        }
    }

    fn settle(&self, p: &PendingSend, answer: SendAnswer) {
        if let Some(tx) = self
            .lock()
            .remove(&(p.seller.clone(), p.client_ref.clone()))
        {
            tx.send_replace(Some(answer));
        }
    }

    /// Sends a `queued` send on a task of its own.
    pub fn dispatch(self: &Arc<Self>, p: PendingSend) {
        let this = self.clone();
        tokio::spawn(async move { this.call(p).await });
    }

    /// A permit for a provider call, unless the relay is stopping (the send's row
    /// stays as it is, for another node or the next start).
    async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let permit = self.calls.acquire().await.ok()?;
        (!self.stopping.load(std::sync::atomic::Ordering::SeqCst)).then_some(permit)
    }

    /// A graceful stop: no provider call starts from now on; waits (up to `wait`)
    /// for the calls under way, whose outcomes are logged. `true` when none is
    /// left: the sends this node holds may go to another node at once.
    pub async fn stop(&self, wait: Duration) -> bool {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match tokio::time::timeout(wait, self.calls.acquire_many(self.concurrency)).await {
            Ok(Ok(all)) => {
                all.forget();
                true
            }
            _ => false,
        }
    }

    async fn call(&self, p: PendingSend) {
        let Some(_permit) = self.permit().await else {
            return;
        };
        let mut attempt = 0;
        let p = loop {
            attempt += 1;
            match self.seq.call(p.clone()).await {
                Ok(SendPlan::Go(p)) => break p,
                Ok(SendPlan::Done(done)) => {
                    let a = ProviderAnswer {
                        message_sid: done.message_sid,
                        outcome: done.outcome,
                        error_code: done.error_code,
                    };
                    self.settle(&p, answer(p.client_ref.clone(), &a, true));
                    return;
                }
                Ok(SendPlan::InProgress) => return,
                Err(e) if e.code == "not_pending" => return,
                Err(e) if attempt < CALL_ATTEMPTS => {
                    tracing::warn!(client_ref = %p.client_ref, code = e.code, "cannot mark a send calling; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(client_ref = %p.client_ref, code = e.code, "cannot mark a send calling; it stays queued for the next start");
                    return;
                }
            }
        };
        let msg = OutboundSms {
            from: p.from.clone(),
            to: p.to.clone(),
            body: p.body.clone(),
        };
        let a = match self.provider.send(&msg).await {
            SendResult::Accepted { sid } => ProviderAnswer {
                message_sid: Some(sid),
                outcome: SendOutcome::Accepted,
                error_code: None,
            },
            // The provider's own text may carry its URL and account id: it goes to
            // the log, and the browser gets codes only (X6).
            SendResult::Failed { code, message } => {
                tracing::warn!(client_ref = %p.client_ref, ?code, provider_message = %message, "provider refused a send");
                ProviderAnswer {
                    message_sid: None,
                    outcome: SendOutcome::Failed,
                    error_code: code,
                }
            }
            SendResult::Unknown { message } => {
                tracing::warn!(client_ref = %p.client_ref, provider_message = %message, "send outcome unknown");
                ProviderAnswer {
                    message_sid: None,
                    outcome: SendOutcome::Unknown,
                    error_code: None,
                }
            }
        };
        // Logging the outcome is retried: the outbound event's idempotency key makes a
        // second attempt after a commit that did land a no-op. A send whose outcome
        // cannot be logged would otherwise answer `pending` until the next start.
        for attempt in 1..=CALL_ATTEMPTS {
            match self.seq.finish_send(p.clone(), a.clone()).await {
                Ok(_) => {
                    metrics::send(outcome_name(a.outcome));
                    self.settle(&p, answer(p.client_ref.clone(), &a, false));
                    return;
                }
                Err(e) if attempt < CALL_ATTEMPTS => {
                    tracing::warn!(client_ref = %p.client_ref, code = e.code, "cannot log a send's outcome; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                // The row stays `calling`: the next start reconciles it.
                Err(e) => {
                    tracing::error!(client_ref = %p.client_ref, code = e.code, "cannot log a send's outcome")
                }
            }
        }
    }

    /// Settles the sends a stop or crash left: `queued` ones are sent, `calling`
    /// ones reconciled with the provider's list, never resent.
    pub fn recover(self: &Arc<Self>, left: Vec<(PendingSend, SendStage)>) {
        for (p, stage) in left {
            match stage {
                SendStage::Queued => self.dispatch(p),
                SendStage::Calling => {
                    let this = self.clone();
                    tokio::spawn(async move { this.reconcile(p).await });
                }
            }
        }
    }

    async fn reconcile(&self, p: PendingSend) {
        let Some(_permit) = self.permit().await else {
            return;
        };
        let listed = match self.provider.list(&p.from, &p.to, p.at).await {
            Ok(list) => Some(list),
            Err(e) => {
                tracing::warn!(client_ref = %p.client_ref, error = %e, "cannot list the provider's messages");
                None
            }
        };
        match self.seq.reconcile(p.clone(), listed).await {
            Ok(out) => {
                let found = out.reconciled.as_ref().map_or("none", |r| r.code());
                metrics::reconciled(found);
                let outcome = out.events.iter().find_map(|e| match &e.body {
                    crate::model::EventBody::Outbound(o) => Some(ProviderAnswer {
                        message_sid: o.message_sid.clone(),
                        outcome: o.outcome,
                        error_code: o.error_code,
                    }),
                    _ => None,
                });
                if let Some(a) = outcome {
                    metrics::send(outcome_name(a.outcome));
                    self.settle(&p, answer(p.client_ref.clone(), &a, false));
                }
                if found == "found" {
                    tracing::info!(client_ref = %p.client_ref, "send reconciled with the provider");
                } else {
                    // The explanation: why the outcome is unknown (never resent).
                    tracing::warn!(client_ref = %p.client_ref, seller = %p.seller, reason = found,
                        "send interrupted by a stop: outcome unknown, not resent");
                }
            }
            Err(e) if e.code == "not_pending" => {}
            Err(e) => {
                tracing::error!(client_ref = %p.client_ref, code = e.code, "cannot log a reconciliation")
            }
        }
    }
}
