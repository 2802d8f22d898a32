//! Whether a message may be sent (B2, B7, C4): one list of refusals with stable
//! codes, used by the pane (to disable Send and say why), the browser's outbox and
//! the relay (to refuse `POST /messages`), so all three refuse the same things.

use thiserror::Error;

use crate::consent::{self, Consent, Purpose};
use crate::phone::{normalize, PhoneError, E164};
use crate::segments::MAX_BODY_CHARS;

/// The longest client reference the relay keeps.
pub const MAX_CLIENT_REF: usize = 200;

/// Why a send is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendRefusal {
    /// Nothing but whitespace to send.
    #[error("the message is empty")]
    EmptyMessage,
    /// Over 1,600 characters (B7).
    #[error("the message is {0} characters long; the limit is 1,600")]
    TooLong(usize),
    /// No org number to send from.
    #[error("no number to send from")]
    NoFromNumber,
    /// The org number is not the seller's or their teams' (C4).
    #[error("the number to send from is not assigned to you or your teams")]
    NotYourNumber,
    /// No customer number to send to.
    #[error("no number to send to")]
    NoToNumber,
    /// The destination is not a valid phone number.
    #[error("invalid destination number: {0}")]
    InvalidPhone(PhoneError),
    /// The customer opted out of texts from this number (B2).
    #[error("the customer replied STOP and opted out of texts from this number")]
    OptedOut,
    /// The idempotency key is empty or too long.
    #[error("the client reference must be 1-200 characters")]
    InvalidClientRef,
    /// No record named, and no conversation between the numbers to take it from.
    #[error("say which record the conversation belongs to")]
    NoRecord,
    /// The named record does not exist (or is not the seller's to send on).
    #[error("no such record")]
    NoSuchRecord,
}

impl SendRefusal {
    /// The stable snake_case code (JS and HTTP boundaries).
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyMessage => "empty_message",
            Self::TooLong(_) => "too_long",
            Self::NoFromNumber => "no_from_number",
            Self::NotYourNumber => "not_your_number",
            Self::NoToNumber => "no_to_number",
            Self::InvalidPhone(_) => "invalid_phone",
            Self::OptedOut => "opted_out",
            Self::InvalidClientRef => "invalid_client_ref",
            Self::NoRecord => "no_record",
            Self::NoSuchRecord => "no_such_record",
        }
    }

    /// The provider error the same send would get from Twilio, when there is one
    /// (so a refusal explains itself like a provider failure, B5).
    pub fn provider_error(&self) -> Option<u32> {
        match self {
            Self::TooLong(_) => Some(21617),
            Self::InvalidPhone(_) => Some(21211),
            Self::OptedOut => Some(21610),
            _ => None,
        }
    }
}

/// What a send check looks at.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The text as it will be sent (placeholders filled).
    pub body: &'a str,
    /// The org number to send from (empty when none is chosen).
    pub from: &'a str,
    /// The customer number, as typed or stored (empty when none).
    pub to: &'a str,
    /// Whether the seller may send from `from` ([`crate::access::Access::may_send_from`]).
    pub may_send_from: bool,
    /// The customer's consent for `from` (B2).
    pub consent: Consent,
    /// Region for reading a national `to`.
    pub region: Option<&'a str>,
}

/// Checks a send; on success, the destination in E.164.
pub fn check(o: &Outgoing<'_>) -> Result<E164, SendRefusal> {
    if o.body.trim().is_empty() {
        return Err(SendRefusal::EmptyMessage);
    }
    let chars = o.body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(SendRefusal::TooLong(chars));
    }
    if o.from.is_empty() {
        return Err(SendRefusal::NoFromNumber);
    }
    if !o.may_send_from {
        return Err(SendRefusal::NotYourNumber);
    }
    if o.to.is_empty() {
        return Err(SendRefusal::NoToNumber);
    }
    let to = normalize(o.to, o.region).map_err(SendRefusal::InvalidPhone)?;
    if !consent::may_send(o.consent, Purpose::Message) {
        return Err(SendRefusal::OptedOut);
    }
    Ok(to)
}

/// Checks a client reference (the relay's idempotency key).
pub fn check_client_ref(client_ref: &str) -> Result<(), SendRefusal> {
    if client_ref.trim().is_empty() || client_ref.len() > MAX_CLIENT_REF {
        return Err(SendRefusal::InvalidClientRef);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Outgoing<'static> {
        Outgoing {
            body: "hello",
            from: "+919800000000",
            to: "+919812345678",
            may_send_from: true,
            consent: Consent::OptedIn,
            region: None,
        }
    }

    #[test]
    fn refusals_in_order() {
        assert_eq!(check(&ok()).unwrap().as_str(), "+919812345678");
        let long = "a".repeat(1601);
        let cases: [(Outgoing<'_>, &str); 7] = [
            (Outgoing { body: "  ", ..ok() }, "empty_message"),
            (
                Outgoing {
                    body: &long,
                    ..ok()
                },
                "too_long",
            ),
            (Outgoing { from: "", ..ok() }, "no_from_number"),
            (
                Outgoing {
                    may_send_from: false,
                    ..ok()
                },
                "not_your_number",
            ),
            (Outgoing { to: "", ..ok() }, "no_to_number"),
            (Outgoing { to: "12", ..ok() }, "invalid_phone"),
            (
                Outgoing {
                    consent: Consent::OptedOut,
                    ..ok()
                },
                "opted_out",
            ),
        ];
        for (o, code) in cases {
            assert_eq!(check(&o).unwrap_err().code(), code);
        }
        assert_eq!(SendRefusal::TooLong(1601).provider_error(), Some(21617));
        assert!(check_client_ref("").is_err());
        assert!(check_client_ref(&"x".repeat(201)).is_err());
        assert!(check_client_ref("c-1").is_ok());
    }
}
