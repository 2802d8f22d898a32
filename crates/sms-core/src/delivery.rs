//! Delivery status of an outbound message (C5, D2).
//!
//! Provider callbacks arrive twice and out of order; a status only moves forward
//! by rank (queued < sending < sent < final < read), among final statuses of equal
//! rank the first one stays, and a failure's error code is kept.

use serde::{Deserialize, Serialize};

/// A provider-reported message status (Twilio's `MessageStatus` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Accepted by the provider.
    Accepted,
    /// Scheduled for later.
    Scheduled,
    /// Waiting in the provider's queue.
    Queued,
    /// Being handed to the carrier.
    Sending,
    /// Handed to the carrier.
    Sent,
    /// Confirmed on the handset.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// The provider could not send it.
    Failed,
    /// A scheduled message was canceled.
    Canceled,
    /// Read by the recipient (some channels).
    Read,
}

impl DeliveryStatus {
    /// Monotonic rank: a report of lower or equal rank never replaces a status.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted | Self::Scheduled | Self::Queued => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Canceled => 3,
            Self::Read => 4,
        }
    }

    /// Whether the status says the message did not get through.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Undelivered | Self::Failed | Self::Canceled)
    }

    /// Parses a provider status, case-insensitively; unknown values give `None`.
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [(&str, DeliveryStatus); 10] = [
            ("accepted", DeliveryStatus::Accepted),
            ("scheduled", DeliveryStatus::Scheduled),
            ("queued", DeliveryStatus::Queued),
            ("sending", DeliveryStatus::Sending),
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("undelivered", DeliveryStatus::Undelivered),
            ("failed", DeliveryStatus::Failed),
            ("canceled", DeliveryStatus::Canceled),
            ("read", DeliveryStatus::Read),
        ];
        let s = s.trim();
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, st)| st)
    }
}

/// What is known about an outbound message's delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The furthest status reported so far.
    pub status: DeliveryStatus,
    /// The provider's error code from a failure report, kept once seen.
    #[serde(default)]
    pub error_code: Option<u32>,
}

impl Delivery {
    /// A delivery at `status` with no error.
    pub fn new(status: DeliveryStatus) -> Self {
        Self {
            status,
            error_code: None,
        }
    }

    /// Applies a report; returns whether anything changed (false for a duplicate,
    /// a late report, or a second final status).
    pub fn apply(&mut self, status: DeliveryStatus, error_code: Option<u32>) -> bool {
        let mut changed = false;
        if status.rank() > self.status.rank() {
            self.status = status;
            changed = true;
        }
        if self.error_code.is_none() && error_code.is_some() && status == self.status {
            self.error_code = error_code;
            changed = true;
        }
        changed
    }
}

/// The delivery of an outbound message once its send's outcome is known: `current`
/// is what the message showed before (if anything), `early` a provider report that
/// arrived before the outcome (D2). A failed send is `failed`; accepted and unknown
/// ones are `queued` until reports move them on.
pub fn merge(
    current: Option<Delivery>,
    outcome: crate::protocol::SendOutcome,
    error_code: Option<u32>,
    early: Option<&Delivery>,
) -> Delivery {
    let status = match outcome {
        crate::protocol::SendOutcome::Failed => DeliveryStatus::Failed,
        _ => DeliveryStatus::Queued,
    };
    let mut d = current.unwrap_or_else(|| Delivery::new(status));
    d.apply(status, error_code);
    if let Some(r) = early {
        d.apply(r.status, r.error_code);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;

    #[test]
    fn status_only_moves_forward() {
        let mut d = Delivery::new(Queued);
        assert!(d.apply(Delivered, None));
        assert!(!d.apply(Sent, None));
        assert!(!d.apply(Delivered, None));
        assert!(!d.apply(Failed, Some(30003)));
        assert_eq!(d, Delivery::new(Delivered));
        assert!(d.apply(Read, None));
        assert!(!d.apply(Queued, None));
    }

    #[test]
    fn failure_reason_is_kept() {
        let mut d = Delivery::new(Sent);
        assert!(d.apply(Undelivered, Some(30003)));
        assert!(!d.apply(Undelivered, None));
        assert!(!d.apply(Delivered, None));
        assert_eq!(d.error_code, Some(30003));
        assert_eq!(d.status, Undelivered);
        assert_eq!(DeliveryStatus::parse(" Delivered "), Some(Delivered));
        assert_eq!(DeliveryStatus::parse("receiving"), None);
    }

    #[test]
    fn merge_takes_the_outcome_then_an_early_report() {
        use crate::protocol::SendOutcome;
        let early = Delivery::new(Delivered);
        assert_eq!(
            merge(None, SendOutcome::Accepted, None, Some(&early)),
            early
        );
        let failed = merge(None, SendOutcome::Failed, Some(21211), None);
        assert_eq!((failed.status, failed.error_code), (Failed, Some(21211)));
        let shown = Delivery::new(Sent);
        assert_eq!(
            merge(Some(shown.clone()), SendOutcome::Unknown, None, None),
            shown
        );
    }
}
