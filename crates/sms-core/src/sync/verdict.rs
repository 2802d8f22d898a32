//! What a send's HTTP answer means for the outbox (B4, B7, X3): one pure function
//! over the status, the body and `Retry-After`, matching what the relay answers
//! (`relay/src/app.rs` `send_message`, `relay/src/error.rs`).

use serde::Serialize;

use crate::protocol::{ErrorBody, SendAnswer, SendOutcome};

/// What to do with a queued send after the relay answered (or did not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The relay has an outcome (`accepted`, `failed` by the provider, `unknown`):
    /// settle the message with it and take it out of the outbox.
    Settle {
        /// The relay's answer.
        answer: SendAnswer,
    },
    /// Keep it queued, same `client_ref`, and send it again later.
    Retry {
        /// Not before this time (ms), when the relay said so (429 `Retry-After`).
        not_before: Option<u64>,
        /// Why it waits.
        cause: RetryCause,
    },
    /// The relay refused it for good: mark it failed with this code.
    Fail {
        /// The refusal's stable code (`opted_out`, `too_long`, `not_your_number`, ...;
        /// `http_413` for a body too large).
        code: String,
        /// The provider-style reason, for refusals the provider would make too.
        reason: Option<String>,
        /// The provider-style error code (21211, 21610, 21617).
        error_code: Option<u32>,
    },
}

/// Why a send stays queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryCause {
    /// The relay holds it and has no outcome yet (202 `pending`).
    Pending,
    /// Send rate or daily cap (429).
    RateLimited,
    /// The session is gone (401): sign in, then it goes out.
    SignedOut,
    /// The relay is busy with the same request (409).
    Conflict,
    /// The relay or the network failed (5xx, 408, no answer).
    Unavailable,
}

/// The verdict for a send's answer. `status` is `None` when no HTTP answer came
/// (network error, timeout); `answer` is the body read as a [`SendAnswer`] (it has an
/// `outcome`), `error` the body read as an [`ErrorBody`] (it has a `code`); either may
/// be missing. `retry_after_secs` is the `Retry-After` header (or the body's
/// `retry_after`). `now` is in ms.
pub fn send_verdict(
    status: Option<u16>,
    answer: Option<&SendAnswer>,
    error: Option<&ErrorBody>,
    retry_after_secs: Option<u64>,
    now: u64,
) -> Verdict {
    let retry = |cause| Verdict::Retry {
        not_before: None,
        cause,
    };
    let Some(status) = status else {
        return retry(RetryCause::Unavailable);
    };
    match status {
        401 => retry(RetryCause::SignedOut),
        409 => retry(RetryCause::Conflict),
        429 => Verdict::Retry {
            not_before: retry_after_secs
                .or(error.and_then(|e| e.retry_after))
                .map(|s| now + s * 1000),
            cause: RetryCause::RateLimited,
        },
        408 | 500..=599 => retry(RetryCause::Unavailable),
        // 201 accepted, 202 unknown or pending, 422 failed at the provider.
        _ => match answer {
            Some(a) if a.outcome == SendOutcome::Pending => retry(RetryCause::Pending),
            Some(a) => Verdict::Settle { answer: a.clone() },
            // A refusal says why (`ErrorBody.code`); a 4xx without one is a proxy's or
            // a firewall's page, not the relay's answer: keep the send, except a body
            // too large, which no retry fixes.
            None if (400..500).contains(&status) => match error {
                Some(e) => Verdict::Fail {
                    code: e.code.clone(),
                    reason: e.reason.clone(),
                    error_code: e.error_code.or_else(|| provider_style(&e.code)),
                },
                None if status == 413 => Verdict::Fail {
                    code: "http_413".into(),
                    reason: None,
                    error_code: None,
                },
                None => retry(RetryCause::Unavailable),
            },
            // A 2xx without an outcome, or anything else: the relay did not say.
            None => retry(RetryCause::Unavailable),
        },
    }
}

/// The provider error code a relay refusal corresponds to, so a failed message explains
/// itself with the same reasons and fixes as a provider failure (B5): a number that is
/// not the seller's is an invalid sender, a country off the allow-list is not enabled.
fn provider_style(code: &str) -> Option<u32> {
    Some(match code {
        "not_your_number" | "no_from_number" => 21606,
        "destination_not_allowed" => 21408,
        "opted_out" => 21610,
        "too_long" => 21617,
        "invalid_phone" | "no_to_number" => 21211,
        _ => return None,
    })
}
