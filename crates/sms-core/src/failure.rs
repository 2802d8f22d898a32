//! Provider failures as codes the page translates (C5, B5, E5).
//!
//! Maps a provider error code (and the status it came with) to a provider-style
//! reason name, a stable snake_case code for what went wrong and one for the
//! suggested fix; for an invalid destination the fix carries the E.164 form of the
//! number when it can be derived. The English words live in [`fmt::Display`] (logs,
//! tests); the page says them in the seller's language from its catalogue.

use std::fmt;

use serde::Serialize;

use crate::phone::normalize;

/// A failure explained for the seller, as codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureReason {
    /// Provider-style reason name, e.g. `InvalidSendingParameters` (shown as is).
    pub reason: &'static str,
    /// What went wrong: a stable snake_case code, e.g. `invalid_sending_parameters`.
    pub code: &'static str,
    /// The provider's numeric error code, when there was one.
    pub error_code: Option<u32>,
    /// What the seller can do about it: a stable snake_case code, e.g. `fix_number`.
    pub fix: &'static str,
    /// The destination in valid E.164 form, when it can be derived (invalid numbers).
    pub suggested_number: Option<String>,
}

/// One row per failure: provider error codes, reason name, code, fix code.
const FAILURES: &[(&[u32], &str, &str, &str)] = &[
    (
        &[21211],
        "InvalidSendingParameters",
        "invalid_sending_parameters",
        "fix_number",
    ),
    (
        &[21614],
        "NotMobileNumber",
        "not_mobile_number",
        "use_mobile",
    ),
    (
        &[21408],
        "RegionNotEnabled",
        "region_not_enabled",
        "enable_country",
    ),
    (
        &[21610],
        "RecipientUnsubscribed",
        "recipient_unsubscribed",
        "do_not_text",
    ),
    (
        &[21606, 21212],
        "InvalidSender",
        "invalid_sender",
        "choose_sender",
    ),
    (&[21617], "BodyTooLong", "body_too_long", "shorten"),
    (
        &[30003],
        "UnreachableHandset",
        "unreachable_handset",
        "try_later",
    ),
    (
        &[30004],
        "MessageBlocked",
        "message_blocked",
        "other_channel",
    ),
    (
        &[30005],
        "UnknownDestination",
        "unknown_destination",
        "check_number",
    ),
    (
        &[30006],
        "LandlineOrUnreachableCarrier",
        "landline_or_unreachable_carrier",
        "use_mobile",
    ),
    (
        &[30007],
        "CarrierFiltering",
        "carrier_filtering",
        "rephrase",
    ),
    (
        &[30008],
        "UnknownError",
        "unknown_error",
        "try_later_support",
    ),
    (&[20429, 14107], "RateLimited", "rate_limited", "wait_retry"),
];

/// Explains a failure with `error_code`; `to` and `default_region` let an invalid
/// destination be offered in its E.164 form.
pub fn explain(error_code: Option<u32>, to: &str, default_region: Option<&str>) -> FailureReason {
    let (reason, code, fix) = match error_code {
        Some(n) => FAILURES
            .iter()
            .find(|(codes, ..)| codes.contains(&n))
            .map_or(
                ("ProviderError", "provider_error", "contact_support"),
                |&(_, r, c, f)| (r, c, f),
            ),
        None => ("DeliveryFailed", "delivery_failed", "check_and_retry"),
    };
    let suggested_number = (code == "invalid_sending_parameters")
        .then(|| normalize(to, default_region).ok())
        .flatten()
        .map(String::from)
        .filter(|n| n != to);
    FailureReason {
        reason,
        code,
        error_code,
        fix,
        suggested_number,
    }
}

impl FailureReason {
    /// What went wrong, in English (logs; the page translates [`FailureReason::code`]).
    pub fn explanation(&self) -> &'static str {
        match self.code {
            "invalid_sending_parameters" => "The destination number is not a valid phone number.",
            "not_mobile_number" => {
                "The destination is not a mobile number, so it cannot receive texts."
            }
            "region_not_enabled" => "Sending to this country is not enabled for the account.",
            "recipient_unsubscribed" => {
                "The customer replied STOP: they opted out of texts from this number."
            }
            "invalid_sender" => "The number you sent from cannot send texts.",
            "body_too_long" => "The message is longer than 1,600 characters.",
            "unreachable_handset" => "The customer's phone is off or out of coverage.",
            "message_blocked" => {
                "The message was blocked, for example because the customer blocks texts."
            }
            "unknown_destination" => "The number does not exist or is no longer in service.",
            "landline_or_unreachable_carrier" => {
                "The number is a landline or its carrier cannot receive texts."
            }
            "carrier_filtering" => "The carrier filtered the message as possible spam.",
            "unknown_error" => "The carrier reported an unknown error.",
            "rate_limited" => "Too many messages were sent at once.",
            "provider_error" => "The SMS provider could not send the message.",
            _ => "The message could not be delivered.",
        }
    }

    /// What the seller can do, in English (logs; the page translates [`FailureReason::fix`]).
    pub fn fix_text(&self) -> &'static str {
        match self.fix {
            "fix_number" => {
                "Fix the number to valid E.164: + country code and number, e.g. +919812345678."
            }
            "use_mobile" => "Use the customer's mobile number.",
            "enable_country" => {
                "Ask an administrator to enable the destination country in the provider's settings."
            }
            "do_not_text" => "Do not text them; they can reply START to opt back in.",
            "choose_sender" => "Choose another of your numbers to send from.",
            "shorten" => "Shorten the message or split it in two.",
            "try_later" => "Try again later.",
            "other_channel" => "Reach the customer another way.",
            "check_number" => "Check the number with the customer.",
            "rephrase" => {
                "Rephrase the message (avoid link shorteners and all-caps) and try again."
            }
            "try_later_support" => "Try again later; if it keeps failing, contact support.",
            "wait_retry" => "The message will be retried; wait a moment.",
            "contact_support" => {
                "Try again later; if it keeps failing, contact support with the error code."
            }
            _ => "Check the number and try again.",
        }
    }

    /// Every failure code and every fix code (for catalogue checks).
    pub fn all_codes() -> impl Iterator<Item = (&'static str, &'static str)> {
        FAILURES.iter().map(|&(_, _, c, f)| (c, f)).chain([
            ("provider_error", "contact_support"),
            ("delivery_failed", "check_and_retry"),
        ])
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {}",
            self.reason,
            self.explanation(),
            self.fix_text()
        )?;
        if let Some(n) = &self.suggested_number {
            write!(f, " ({n})")?;
        }
        Ok(())
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

    #[test]
    fn codes_are_snake_case_and_each_has_its_own_words() {
        let snake =
            |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let mut explanations = std::collections::HashSet::new();
        for (code, fix) in FailureReason::all_codes() {
            assert!(snake(code) && snake(fix), "{code} / {fix}");
            let f = FailureReason {
                reason: "",
                code,
                error_code: None,
                fix,
                suggested_number: None,
            };
            assert!(
                explanations.insert(f.explanation()),
                "{code} shares its explanation"
            );
        }
        let f = explain(Some(21211), "098123 45678", Some("IN"));
        assert_eq!(
            (f.code, f.fix),
            ("invalid_sending_parameters", "fix_number")
        );
        assert_eq!(
            f.to_string(),
            "InvalidSendingParameters: The destination number is not a valid phone number. \
             Fix the number to valid E.164: + country code and number, e.g. +919812345678. (+919812345678)"
        );
    }
}
