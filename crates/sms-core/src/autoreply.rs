//! HELP / INFO auto-replies and opt-out confirmations (F5).
//!
//! A customer who texts `HELP` or `INFO` (the whole body, case-insensitive, surrounding
//! whitespace ignored, like the consent keywords of [`crate::consent`]) gets the org
//! number's configured help text. A STOP-family or START-family keyword gets the
//! configured confirmation only when the provider does not send one itself
//! (`provider_handles_opt_out = false`; Twilio's Advanced Opt-Out answers these
//! keywords itself, so the default is to stay silent). The STOP confirmation is the one
//! message an opted-out number may still get ([`crate::consent::may_send`]).
//!
//! Nothing is ever sent to a sender that is not a full international number (a short
//! code or an alphanumeric sender id), nor without a configured text. [`reply`] decides;
//! the relay sends the reply as an ordinary outbound message of the conversation,
//! attributed to [`AUTO_REPLY_SENDER`], with the client reference [`client_ref`] derived
//! from the inbound message (a repeated webhook never replies twice).

use serde::{Deserialize, Serialize};

use crate::consent::{self, keyword, Consent, Purpose};
use crate::phone::{match_key, normalize};
use crate::segments::MAX_BODY_CHARS;

/// Bodies that ask for the help text.
pub const HELP_KEYWORDS: [&str; 2] = ["HELP", "INFO"];

/// Who an automatic reply is logged as sent by (the `by` of its `outbound` event).
pub const AUTO_REPLY_SENDER: &str = "auto_reply";

/// The reply texts, as configured (`[auto_reply]` in the relay's configuration): one
/// default per kind, and per org number overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoReply {
    /// The answer to HELP / INFO (none: no answer).
    pub help: Option<String>,
    /// The opt-out confirmation, sent only when the provider does not send one.
    pub stop: Option<String>,
    /// The opt-in confirmation, sent only when the provider does not send one.
    pub start: Option<String>,
    /// Whether the provider answers STOP / START itself (Twilio's Advanced Opt-Out and
    /// default opt-out handling do): then no confirmation is sent here. Default `true`.
    pub provider_handles_opt_out: bool,
    /// Per org number overrides.
    pub numbers: Vec<NumberReplies>,
    /// Country calling codes a reply may go to (empty: any). Not read from the
    /// `[auto_reply]` table: the relay sets it to its `limits.allowed_country_codes`,
    /// so a number abroad cannot make the relay text it by texting HELP.
    #[serde(skip)]
    pub allowed_country_codes: Vec<u16>,
}

impl Default for AutoReply {
    fn default() -> Self {
        Self {
            help: None,
            stop: None,
            start: None,
            provider_handles_opt_out: true,
            numbers: Vec::new(),
            allowed_country_codes: Vec::new(),
        }
    }
}

/// One org number's overrides (`[[auto_reply.numbers]]`): what is set replaces the
/// default; an empty text switches that reply off for the number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberReplies {
    /// The org number (any format the default region reads; compared by key).
    pub number: String,
    /// Its answer to HELP / INFO.
    #[serde(default)]
    pub help: Option<String>,
    /// Its opt-out confirmation.
    #[serde(default)]
    pub stop: Option<String>,
    /// Its opt-in confirmation.
    #[serde(default)]
    pub start: Option<String>,
    /// Whether the provider answers STOP / START for this number.
    #[serde(default)]
    pub provider_handles_opt_out: Option<bool>,
}

/// One org number's replies, its overrides applied (texts trimmed of nothing; an
/// empty or blank text is no text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replies<'a> {
    /// The answer to HELP / INFO.
    pub help: Option<&'a str>,
    /// The opt-out confirmation.
    pub stop: Option<&'a str>,
    /// The opt-in confirmation.
    pub start: Option<&'a str>,
    /// Whether the provider answers STOP / START itself.
    pub provider_handles_opt_out: bool,
    /// Country calling codes a reply may go to (empty: any).
    pub allowed_country_codes: &'a [u16],
}

fn text(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|t| !t.trim().is_empty())
}

impl AutoReply {
    /// The replies of the org number whose key is `org_key` (numbers in the
    /// configuration are compared by their key in `region`).
    pub fn for_number(&self, org_key: &str, region: Option<&str>) -> Replies<'_> {
        let number = self
            .numbers
            .iter()
            .find(|n| match_key(&n.number, region) == org_key);
        fn pick<'a>(
            own: Option<&'a Option<String>>,
            default: &'a Option<String>,
        ) -> Option<&'a str> {
            match own {
                Some(Some(t)) => text(Some(t)),
                _ => text(default.as_ref()),
            }
        }
        Replies {
            help: pick(number.map(|n| &n.help), &self.help),
            stop: pick(number.map(|n| &n.stop), &self.stop),
            start: pick(number.map(|n| &n.start), &self.start),
            provider_handles_opt_out: number
                .and_then(|n| n.provider_handles_opt_out)
                .unwrap_or(self.provider_handles_opt_out),
            allowed_country_codes: &self.allowed_country_codes,
        }
    }

    /// What a start refuses: a text longer than a message may be, a number that is
    /// not a phone number, a number listed twice.
    pub fn check(&self, region: Option<&str>) -> Result<(), String> {
        let too_long = |what: &str, t: &Option<String>| match t {
            Some(t) if t.chars().count() > MAX_BODY_CHARS => Err(format!(
                "auto_reply {what}: longer than {MAX_BODY_CHARS} characters"
            )),
            _ => Ok(()),
        };
        too_long("help", &self.help)?;
        too_long("stop", &self.stop)?;
        too_long("start", &self.start)?;
        let mut seen = Vec::new();
        for n in &self.numbers {
            let key = normalize(&n.number, region)
                .map_err(|e| format!("auto_reply number {:?}: {e}", n.number))?;
            if seen.contains(&key) {
                return Err(format!("auto_reply number {} is listed twice", n.number));
            }
            too_long(&format!("{} help", n.number), &n.help)?;
            too_long(&format!("{} stop", n.number), &n.stop)?;
            too_long(&format!("{} start", n.number), &n.start)?;
            seen.push(key);
        }
        Ok(())
    }
}

/// What an automatic reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// HELP / INFO.
    Help,
    /// A STOP-family keyword that opted the customer out.
    OptOut,
    /// A START-family keyword.
    OptIn,
}

impl ReplyKind {
    /// What the reply is for the consent rule.
    pub fn purpose(self) -> Purpose {
        match self {
            Self::OptOut => Purpose::OptOutConfirmation,
            Self::Help | Self::OptIn => Purpose::Message,
        }
    }
}

/// An automatic reply to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// What it answers.
    pub kind: ReplyKind,
    /// Its text.
    pub body: String,
}

/// Whether a body asks for help (HELP / INFO, the whole body).
pub fn is_help(body: &str) -> bool {
    let word = body.trim();
    HELP_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Whether a sender may get an automatic reply: a full international number
/// (`+` and a number valid for its country), never a short code or an alphanumeric
/// sender id; and one in a country replies may go to (`allowed`, empty: any).
pub fn replies_to(sender: &str, allowed: &[u16]) -> bool {
    let s = sender.trim();
    s.starts_with('+')
        && normalize(s, None)
            .is_ok_and(|n| allowed.is_empty() || allowed.contains(&n.calling_code()))
}

/// The automatic reply to an inbound `body` from `sender`, under the org number's
/// `replies`, when the customer's consent was `before` the message:
/// - nothing to a short code, an alphanumeric sender, or a country replies may not go
///   to ([`replies_to`]);
/// - HELP / INFO: the help text, unless the customer is opted out;
/// - a STOP-family keyword that opts the customer out: the stop confirmation when the
///   provider does not send one (a repeated STOP of an opted-out customer: nothing,
///   they had their one message);
/// - a START-family keyword: the start confirmation when the provider does not send one;
/// - no configured text: nothing.
pub fn reply(replies: Replies<'_>, sender: &str, body: &str, before: Consent) -> Option<Reply> {
    if !replies_to(sender, replies.allowed_country_codes) {
        return None;
    }
    let (kind, text) = match keyword(body) {
        Some(Consent::OptedOut) if before == Consent::OptedOut => return None,
        Some(_) if replies.provider_handles_opt_out => return None,
        Some(Consent::OptedOut) => (ReplyKind::OptOut, replies.stop?),
        Some(Consent::OptedIn) => (ReplyKind::OptIn, replies.start?),
        None if is_help(body) => (ReplyKind::Help, replies.help?),
        None => return None,
    };
    let after = keyword(body).unwrap_or(before);
    consent::may_send(after, kind.purpose()).then(|| Reply {
        kind,
        body: text.to_owned(),
    })
}

/// The client reference of the automatic reply to the inbound message `message_sid`:
/// the same message delivered twice gets one reply.
pub fn client_ref(message_sid: &str) -> String {
    format!("auto:{message_sid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMER: &str = "+919812345678";

    fn replies() -> Replies<'static> {
        Replies {
            help: Some("Acme: reply STOP to opt out"),
            stop: Some("You are unsubscribed"),
            start: Some("You are subscribed again"),
            provider_handles_opt_out: false,
            allowed_country_codes: &[],
        }
    }

    fn kind(r: Replies<'_>, sender: &str, body: &str, before: Consent) -> Option<ReplyKind> {
        reply(r, sender, body, before).map(|r| r.kind)
    }

    #[test]
    fn help_and_info_get_the_help_text_whatever_the_case_and_spaces() {
        for body in ["HELP", "help", " Help\n", "INFO", "info", "\tInfo "] {
            let r = reply(replies(), CUSTOMER, body, Consent::OptedIn).unwrap();
            assert_eq!(r.kind, ReplyKind::Help, "{body:?}");
            assert_eq!(r.body, "Acme: reply STOP to opt out");
        }
        for body in ["help me", "HELP!", "information", "", "  ", "hello"] {
            assert_eq!(
                reply(replies(), CUSTOMER, body, Consent::OptedIn),
                None,
                "{body:?}"
            );
        }
    }

    #[test]
    fn never_a_reply_to_a_short_code_or_an_alphanumeric_sender() {
        for sender in [
            "12345",
            "898211",
            "+12345",
            "ACME",
            "AcmeBank",
            "VM-ACMEIN",
            "",
            "  ",
        ] {
            for body in ["HELP", "STOP", "START"] {
                assert_eq!(
                    reply(replies(), sender, body, Consent::OptedIn),
                    None,
                    "{sender:?} {body}"
                );
            }
        }
        assert!(replies_to(" +14155552671 ", &[]));
        assert!(replies_to("+447911123456", &[]));
        // A number without its country code is not one a reply may assume.
        assert!(!replies_to("09812345678", &[]));
    }

    #[test]
    fn replies_go_only_to_the_countries_sends_may_go_to() {
        let us_only = Replies {
            allowed_country_codes: &[1],
            ..replies()
        };
        assert_eq!(kind(us_only, CUSTOMER, "HELP", Consent::OptedIn), None);
        assert_eq!(kind(us_only, CUSTOMER, "STOP", Consent::OptedIn), None);
        assert_eq!(
            kind(us_only, "+14155552671", "HELP", Consent::OptedIn),
            Some(ReplyKind::Help)
        );
        let config = AutoReply {
            help: Some("Help".into()),
            allowed_country_codes: vec![91],
            ..AutoReply::default()
        };
        assert_eq!(
            config
                .for_number("+14155550100", None)
                .allowed_country_codes,
            [91]
        );
    }

    #[test]
    fn the_stop_confirmation_goes_out_although_the_customer_is_now_opted_out() {
        let r = reply(replies(), CUSTOMER, " stop ", Consent::OptedIn).unwrap();
        assert_eq!(r.kind, ReplyKind::OptOut);
        assert_eq!(r.body, "You are unsubscribed");
        for body in ["STOPALL", "Unsubscribe", "cancel", "END", "quit"] {
            assert_eq!(
                kind(replies(), CUSTOMER, body, Consent::OptedIn),
                Some(ReplyKind::OptOut),
                "{body}"
            );
        }
        // Already opted out: the one message was sent then.
        assert_eq!(kind(replies(), CUSTOMER, "STOP", Consent::OptedOut), None);
    }

    #[test]
    fn start_gets_its_confirmation() {
        for before in [Consent::OptedOut, Consent::OptedIn] {
            let r = reply(replies(), CUSTOMER, "Start", before).unwrap();
            assert_eq!(r.kind, ReplyKind::OptIn);
            assert_eq!(r.body, "You are subscribed again");
        }
        assert_eq!(
            kind(replies(), CUSTOMER, "unstop", Consent::OptedOut),
            Some(ReplyKind::OptIn)
        );
    }

    #[test]
    fn the_provider_sends_its_own_confirmations_by_default() {
        let r = Replies {
            provider_handles_opt_out: true,
            ..replies()
        };
        assert_eq!(kind(r, CUSTOMER, "STOP", Consent::OptedIn), None);
        assert_eq!(kind(r, CUSTOMER, "START", Consent::OptedOut), None);
        assert_eq!(
            kind(r, CUSTOMER, "HELP", Consent::OptedIn),
            Some(ReplyKind::Help)
        );
        assert!(AutoReply::default().provider_handles_opt_out);
    }

    #[test]
    fn an_opted_out_customer_gets_no_help_text() {
        assert_eq!(kind(replies(), CUSTOMER, "HELP", Consent::OptedOut), None);
    }

    #[test]
    fn no_configured_text_no_reply() {
        let none = Replies {
            help: None,
            stop: None,
            start: None,
            provider_handles_opt_out: false,
            allowed_country_codes: &[],
        };
        for body in ["HELP", "STOP", "START"] {
            assert_eq!(
                reply(none, CUSTOMER, body, Consent::OptedIn),
                None,
                "{body}"
            );
        }
    }

    #[test]
    fn per_number_texts_override_the_defaults_and_blank_switches_off() {
        let config: AutoReply = serde_json::from_value(serde_json::json!({
            "help": "Default help",
            "stop": "Default stop",
            "provider_handles_opt_out": false,
            "numbers": [
                {"number": "+1 415 555 0100", "help": "Asha's help"},
                {"number": "+14155550101", "help": " ", "provider_handles_opt_out": true},
            ]
        }))
        .unwrap();
        assert!(config.check(Some("IN")).is_ok());
        let asha = config.for_number("+14155550100", Some("IN"));
        assert_eq!(asha.help, Some("Asha's help"));
        assert_eq!(asha.stop, Some("Default stop"));
        assert_eq!(asha.start, None);
        assert!(!asha.provider_handles_opt_out);
        let north = config.for_number("+14155550101", Some("IN"));
        assert_eq!(north.help, None);
        assert!(north.provider_handles_opt_out);
        let other = config.for_number("+14155550102", Some("IN"));
        assert_eq!(other.help, Some("Default help"));
        assert_eq!(
            AutoReply::default().for_number("+14155550100", None),
            Replies {
                help: None,
                stop: None,
                start: None,
                provider_handles_opt_out: true,
                allowed_country_codes: &[],
            }
        );
    }

    #[test]
    fn a_configuration_with_a_bad_number_or_text_is_refused() {
        let mut c = AutoReply {
            help: Some("a".repeat(1601)),
            ..AutoReply::default()
        };
        assert!(c.check(None).unwrap_err().contains("help"));
        c.help = None;
        c.numbers = vec![NumberReplies {
            number: "ACME".into(),
            ..NumberReplies::default()
        }];
        assert!(c.check(None).is_err());
        c.numbers = vec![
            NumberReplies {
                number: "+14155550100".into(),
                ..NumberReplies::default()
            },
            NumberReplies {
                number: "+1 (415) 555-0100".into(),
                ..NumberReplies::default()
            },
        ];
        assert!(c.check(None).unwrap_err().contains("twice"));
    }

    #[test]
    fn the_reply_reference_is_derived_from_the_inbound_message() {
        assert_eq!(client_ref("SM1"), client_ref("SM1"));
        assert_ne!(client_ref("SM1"), client_ref("SM2"));
        assert!(crate::send::check_client_ref(&client_ref(&"S".repeat(34))).is_ok());
    }
}
