//! Opt-out and opt-in keywords (B2).
//!
//! A body that is exactly one of the keywords (case-insensitive, surrounding
//! whitespace ignored) changes the customer's consent for that org number.

use serde::{Deserialize, Serialize};

/// Bodies that opt the customer out.
pub const OPT_OUT_KEYWORDS: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
/// Bodies that opt the customer back in.
pub const OPT_IN_KEYWORDS: [&str; 2] = ["START", "UNSTOP"];

/// Whether a customer number may be texted from an org number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// No opt-out on record.
    #[default]
    OptedIn,
    /// The customer sent an opt-out keyword: sending is refused.
    OptedOut,
}

/// The consent an inbound body asks for, if it is a keyword.
pub fn keyword(body: &str) -> Option<Consent> {
    let word = body.trim();
    if OPT_OUT_KEYWORDS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
    {
        Some(Consent::OptedOut)
    } else if OPT_IN_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
        Some(Consent::OptedIn)
    } else {
        None
    }
}

/// What a message to a customer is, for the consent rule ([`may_send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Anything but the confirmation of an opt-out: a seller's message, a HELP reply,
    /// an opt-in confirmation.
    Message,
    /// The confirmation of the opt-out the customer just sent (F5).
    OptOutConfirmation,
}

/// Whether a message may go to a customer whose consent is `consent` (B2, F5):
/// nothing goes to an opted-out number except the one confirmation of that opt-out.
pub fn may_send(consent: Consent, purpose: Purpose) -> bool {
    consent == Consent::OptedIn || purpose == Purpose::OptOutConfirmation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opted_out_number_gets_only_its_opt_out_confirmation() {
        assert!(may_send(Consent::OptedIn, Purpose::Message));
        assert!(may_send(Consent::OptedIn, Purpose::OptOutConfirmation));
        assert!(!may_send(Consent::OptedOut, Purpose::Message));
        assert!(may_send(Consent::OptedOut, Purpose::OptOutConfirmation));
    }

    #[test]
    fn whole_body_keywords_only() {
        assert_eq!(keyword(" stop\n"), Some(Consent::OptedOut));
        assert_eq!(keyword("Unsubscribe"), Some(Consent::OptedOut));
        assert_eq!(keyword("QUIT"), Some(Consent::OptedOut));
        assert_eq!(keyword("unstop"), Some(Consent::OptedIn));
        assert_eq!(keyword("Start"), Some(Consent::OptedIn));
        assert_eq!(keyword("please stop"), None);
        assert_eq!(keyword("STOP!"), None);
        assert_eq!(keyword("YES"), None);
        assert_eq!(keyword(""), None);
    }
}
