//! Reconnect delays: exponential growth with decorrelated jitter, from a seed the
//! caller gives (the core draws no randomness of its own).

/// Decorrelated jitter ("Exponential Backoff And Jitter", AWS architecture blog):
/// each delay is drawn uniformly from `[min, 3 × previous]`, capped at `max`. It grows
/// about threefold per failure, never falls below `min` (no reconnect storm at 0 ms),
/// and two clients with different seeds spread apart.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: u64,
    max: u64,
    previous: u64,
    rng: u64,
}

impl Backoff {
    /// A backoff between `min_ms` and `max_ms`; `seed` drives the jitter.
    pub fn new(min_ms: u64, max_ms: u64, seed: u64) -> Self {
        Self {
            min: min_ms,
            max: max_ms.max(min_ms),
            previous: min_ms,
            // xorshift must not start at zero
            rng: seed | 1,
        }
    }

    /// The next delay in ms.
    pub fn next_delay(&mut self) -> u64 {
        let high = self.previous.saturating_mul(3).min(self.max);
        let span = high.saturating_sub(self.min) + 1;
        let delay = (self.min + self.random() % span).min(self.max);
        self.previous = delay;
        delay
    }

    /// Back to the shortest delay (after a connection was live).
    pub fn reset(&mut self) {
        self.previous = self.min;
    }

    /// xorshift64: enough for jitter, no dependency.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds_and_differ_by_seed() {
        let mut a = Backoff::new(1000, 30_000, 1);
        let mut b = Backoff::new(1000, 30_000, 2);
        let da: Vec<u64> = (0..50).map(|_| a.next_delay()).collect();
        let db: Vec<u64> = (0..50).map(|_| b.next_delay()).collect();
        assert!(da.iter().all(|d| (1000..=30_000).contains(d)));
        assert_ne!(da, db);
    }
}
