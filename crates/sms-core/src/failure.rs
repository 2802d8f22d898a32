//! Provider failures in plain language, with a fix (C5, B5).
//!
//! Maps a provider error code (and the status it came with) to a stable reason
//! code, an explanation and a suggested fix; for an invalid destination the fix
//! carries the E.164 form of the number when it can be derived.

use serde::Serialize;

use crate::phone::normalize;

/// A failure explained for the seller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureReason {
    /// Stable reason code, e.g. `InvalidSendingParameters`.
    pub reason: &'static str,
    /// The provider's numeric error code, when there was one.
    pub error_code: Option<u32>,
    /// What went wrong, in plain language.
    pub explanation: &'static str,
    /// What the seller can do about it.
    pub fix: &'static str,
    /// The destination in valid E.164 form, when it can be derived (invalid numbers).
    pub suggested_number: Option<String>,
}

/// Explains a failure with `error_code`; `to` and `default_region` let an invalid
/// destination be offered in its E.164 form.
pub fn explain(error_code: Option<u32>, to: &str, default_region: Option<&str>) -> FailureReason {
    let (reason, explanation, fix) = match error_code {
        Some(21211) => (
            "InvalidSendingParameters",
            "The destination number is not a valid phone number.",
            "Fix the number to valid E.164: + country code and number, e.g. +919812345678.",
        ),
        Some(21614) => (
            "NotMobileNumber",
            "The destination is not a mobile number, so it cannot receive texts.",
            "Use the customer's mobile number.",
        ),
        Some(21408) => (
            "RegionNotEnabled",
            "Sending to this country is not enabled for the account.",
            "Ask an administrator to enable the destination country in the provider's settings.",
        ),
        Some(21610) => (
            "RecipientUnsubscribed",
            "The customer replied STOP: they opted out of texts from this number.",
            "Do not text them; they can reply START to opt back in.",
        ),
        Some(21606) | Some(21212) => (
            "InvalidSender",
            "The number you sent from cannot send texts.",
            "Choose another of your numbers to send from.",
        ),
        Some(21617) => (
            "BodyTooLong",
            "The message is longer than 1,600 characters.",
            "Shorten the message or split it in two.",
        ),
        Some(30003) => (
            "UnreachableHandset",
            "The customer's phone is off or out of coverage.",
            "Try again later.",
        ),
        Some(30004) => (
            "MessageBlocked",
            "The message was blocked, for example because the customer blocks texts.",
            "Reach the customer another way.",
        ),
        Some(30005) => (
            "UnknownDestination",
            "The number does not exist or is no longer in service.",
            "Check the number with the customer.",
        ),
        Some(30006) => (
            "LandlineOrUnreachableCarrier",
            "The number is a landline or its carrier cannot receive texts.",
            "Use the customer's mobile number.",
        ),
        Some(30007) => (
            "CarrierFiltering",
            "The carrier filtered the message as possible spam.",
            "Rephrase the message (avoid link shorteners and all-caps) and try again.",
        ),
        Some(30008) => (
            "UnknownError",
            "The carrier reported an unknown error.",
            "Try again later; if it keeps failing, contact support.",
        ),
        Some(20429) | Some(14107) => (
            "RateLimited",
            "Too many messages were sent at once.",
            "The message will be retried; wait a moment.",
        ),
        Some(_) => (
            "ProviderError",
            "The SMS provider could not send the message.",
            "Try again later; if it keeps failing, contact support with the error code.",
        ),
        None => (
            "DeliveryFailed",
            "The message could not be delivered.",
            "Check the number and try again.",
        ),
    };
    let suggested_number = (reason == "InvalidSendingParameters")
        .then(|| normalize(to, default_region).ok())
        .flatten()
        .map(String::from)
        .filter(|n| n != to);
    FailureReason {
        reason,
        error_code,
        explanation,
        fix,
        suggested_number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_number_offers_e164() {
        let f = explain(Some(21211), "098123 45678", Some("IN"));
        assert_eq!(f.reason, "InvalidSendingParameters");
        assert_eq!(f.suggested_number.as_deref(), Some("+919812345678"));
        assert_eq!(
            explain(Some(21211), "12", Some("IN")).suggested_number,
            None
        );
        assert_eq!(explain(Some(21614), "x", None).reason, "NotMobileNumber");
        assert_eq!(
            explain(Some(21610), "x", None).reason,
            "RecipientUnsubscribed"
        );
        assert_eq!(explain(Some(99999), "x", None).reason, "ProviderError");
        assert_eq!(explain(None, "x", None).reason, "DeliveryFailed");
    }
}
