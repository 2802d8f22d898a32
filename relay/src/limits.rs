//! Per-seller limits (X4): send rate and daily cap (`governor`), open event streams
//! (the oldest closes), and the destination allow-list. Keyed by the signed-in
//! seller: behind a proxy every request comes from the proxy's address.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

use crate::config::Limits;

/// Send rate and daily cap per seller.
pub struct SendLimits {
    per_minute: Option<DefaultKeyedRateLimiter<String>>,
    per_day: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

/// Which limit refused a send, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// `send_rate_limited` or `daily_send_cap`.
    pub code: &'static str,
    /// Whole seconds until a send would pass (at least 1).
    pub retry_after_secs: u64,
}

fn keyed(n: u32, period: Duration) -> Option<DefaultKeyedRateLimiter<String>> {
    let n = NonZeroU32::new(n)?;
    // `n` at once, refilled evenly over the period.
    let quota = Quota::with_period(period / n.get())?.allow_burst(n);
    Some(RateLimiter::keyed(quota))
}

impl SendLimits {
    /// From the configuration (0 turns a limit off).
    pub fn new(limits: &Limits) -> Self {
        Self {
            per_minute: keyed(limits.sends_per_minute, Duration::from_secs(60)),
            per_day: keyed(limits.sends_per_day, Duration::from_secs(86_400)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one new send of `seller`, or says which limit it exceeds.
    pub fn check(&self, seller: &str) -> Result<(), Exceeded> {
        let key = seller.to_owned();
        // The minute first: a send refused for the rate must not use up the day.
        for (limiter, code) in [
            (&self.per_minute, "send_rate_limited"),
            (&self.per_day, "daily_send_cap"),
        ] {
            let Some(limiter) = limiter else { continue };
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(Exceeded {
                    code,
                    retry_after_secs: (wait.as_secs_f64().ceil() as u64).max(1),
                });
            }
        }
        Ok(())
    }
}

/// Each seller's open streams, oldest first: an id and the signal that closes it.
type OpenStreams = HashMap<String, VecDeque<(u64, Arc<Notify>)>>;

/// Open event streams per seller: opening one past the limit closes the oldest.
pub struct Streams {
    max: usize,
    next: AtomicU64,
    open: Mutex<OpenStreams>,
}

/// An open stream's place; dropping it frees the place.
pub struct StreamSlot {
    streams: Arc<Streams>,
    seller: String,
    id: u64,
    close: Arc<Notify>,
}

impl StreamSlot {
    /// Resolves when a newer stream of the same seller takes this one's place.
    pub async fn closed(&self) {
        self.close.notified().await;
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(list) = open.get_mut(&self.seller) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                open.remove(&self.seller);
            }
        }
    }
}

impl Streams {
    /// At most `max` streams per seller (at least 1).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenStreams> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new stream of `seller`, closing their oldest past the limit.
    pub fn open(self: &Arc<Self>, seller: &str) -> StreamSlot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let mut open = self.lock();
        let list = open.entry(seller.to_owned()).or_default();
        list.push_back((id, close.clone()));
        while list.len() > self.max {
            if let Some((_, oldest)) = list.pop_front() {
                // Stored as a permit if that stream is not waiting right now.
                oldest.notify_one();
            }
        }
        StreamSlot {
            streams: self.clone(),
            seller: seller.to_owned(),
            id,
            close,
        }
    }
}

/// Whether `to` (E.164) may be sent to under the allow-list of calling codes.
pub fn destination_allowed(allowed: &[u16], to: &str, region: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    sms_core::normalize(to, region).is_ok_and(|n| allowed.contains(&n.calling_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_refuses_past_its_burst_with_a_retry_after() {
        let limits = Limits {
            sends_per_minute: 2,
            sends_per_day: 3,
            ..Limits::default()
        };
        let l = SendLimits::new(&limits);
        assert!(l.check("asha").is_ok());
        assert!(l.check("asha").is_ok());
        let e = l.check("asha").unwrap_err();
        assert_eq!(e.code, "send_rate_limited");
        assert!(e.retry_after_secs >= 1);
        assert!(l.check("ravi").is_ok(), "per seller");
        let off = SendLimits::new(&Limits {
            sends_per_minute: 0,
            sends_per_day: 0,
            ..Limits::default()
        });
        for _ in 0..100 {
            assert!(off.check("asha").is_ok());
        }
    }

    #[test]
    fn the_allow_list_is_by_calling_code() {
        assert!(destination_allowed(&[], "+447700900123", None));
        assert!(destination_allowed(&[91], "098123 45678", Some("IN")));
        assert!(!destination_allowed(&[91], "+447700900123", None));
        assert!(!destination_allowed(&[91], "garbage", None));
    }

    #[tokio::test]
    async fn the_oldest_stream_closes_past_the_limit() {
        let s = Streams::new(2);
        let a = s.open("asha");
        let _b = s.open("asha");
        let _other = s.open("ravi");
        let _c = s.open("asha");
        // `a` was told to close (a stored permit: this resolves at once).
        a.closed().await;
        assert_eq!(s.lock()["asha"].len(), 2);
    }
}
