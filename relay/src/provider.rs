//! SMS providers behind one trait: parse their callbacks, check their signatures,
//! send through their API. Twilio-compatible is the one implemented; another (e.g.
//! Azure Communication Services' Event Grid payloads) is a new implementation.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sms_core::delivery::DeliveryStatus;
use sms_core::pane::Media;
use thiserror::Error;

use crate::signature;

/// A boxed future (keeps the trait object-safe without extra crates).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use sms_core::relay::{InboundSms, ListedMessage, StatusReport};

/// A malformed callback.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProviderError {
    /// A required field is missing or empty.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field has a value we cannot use.
    #[error("invalid {field}: {value:?}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// A message to send.
#[derive(Clone, Debug)]
pub struct OutboundSms {
    /// Org number (E.164).
    pub from: String,
    /// Customer number (E.164).
    pub to: String,
    /// Text.
    pub body: String,
}

/// How a send ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// Accepted, with the provider's message id.
    Accepted {
        /// Provider message id.
        sid: String,
    },
    /// Refused by the provider.
    Failed {
        /// Provider error code.
        code: Option<u32>,
        /// Provider message.
        message: String,
    },
    /// Unknown (timeout, 5xx after the request went out): never resent blindly.
    Unknown {
        /// What happened.
        message: String,
    },
}

/// An SMS provider.
pub trait Provider: Send + Sync {
    /// Whether a callback to `url` with `params` carries a valid `signature`.
    fn verify(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<(), &'static str>;
    /// Reads an inbound-message callback.
    fn parse_inbound(&self, params: &[(String, String)]) -> Result<InboundSms, ProviderError>;
    /// Reads a status callback.
    fn parse_status(&self, params: &[(String, String)]) -> Result<StatusReport, ProviderError>;
    /// Sends a message (with the provider's retry policy).
    fn send<'a>(&'a self, msg: &'a OutboundSms) -> BoxFuture<'a, SendResult>;
    /// The messages sent from `from` to `to` since about `since` (reconciliation of a
    /// send whose outcome was lost in a crash); `Err` when the provider cannot be asked.
    fn list<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        since: sms_core::Timestamp,
    ) -> BoxFuture<'a, Result<Vec<ListedMessage>, String>>;
}

/// Twilio-compatible provider settings.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TwilioConfig {
    /// Account SID (`AC…`; in every API URL).
    pub account_sid: String,
    /// Auth token: verifies callback signatures (and authenticates API calls when no
    /// API key is set). Never leaves the relay. Env `RELAY_AUTH_TOKEN`, or a file
    /// (`auth_token_file`, `RELAY_AUTH_TOKEN_FILE`).
    #[serde(default)]
    pub auth_token: SecretString,
    /// A file holding the auth token.
    #[serde(default)]
    pub auth_token_file: Option<std::path::PathBuf>,
    /// API base URL (`https://api.twilio.com`; the demo points it at its fake).
    pub base_url: String,
    /// API key SID (`SK…`): REST calls authenticate with it and its secret instead of
    /// the auth token (which still verifies webhooks: API keys cannot).
    #[serde(default)]
    pub api_key_sid: Option<String>,
    /// The API key's secret. Env `RELAY_TWILIO_API_KEY_SECRET`, or a file
    /// (`api_key_secret_file`, `RELAY_TWILIO_API_KEY_SECRET_FILE`).
    #[serde(default)]
    pub api_key_secret: Option<SecretString>,
    /// A file holding the API key's secret.
    #[serde(default)]
    pub api_key_secret_file: Option<std::path::PathBuf>,
    /// Messaging Service SID (`MG…`) per org number (E.164): sends from that number
    /// carry both `From` (replies come back to it, R2) and `MessagingServiceSid`.
    #[serde(default)]
    pub messaging_services: std::collections::BTreeMap<String, String>,
}

impl TwilioConfig {
    /// The REST API's basic-auth user and password: the API key when one is set,
    /// else the account SID and auth token.
    pub fn api_credentials(&self) -> (&str, &str) {
        match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sid), Some(secret)) => (sid.as_str(), secret.expose_secret()),
            _ => (self.account_sid.as_str(), self.auth_token.expose_secret()),
        }
    }

    /// What a start refuses: half an API key, an API key SID that is not `SK…`, a
    /// Messaging Service SID that is not `MG…`.
    pub fn check(&self) -> Result<(), String> {
        match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sid), Some(_)) if !sid.starts_with("SK") => {
                return Err("provider api_key_sid: an API key SID starts with SK".into())
            }
            (Some(_), None) => {
                return Err("provider api_key_sid is set without api_key_secret".into())
            }
            (None, Some(_)) => {
                return Err("provider api_key_secret is set without api_key_sid".into())
            }
            _ => {}
        }
        for (number, sid) in &self.messaging_services {
            if !sid.starts_with("MG") {
                return Err(format!(
                    "provider messaging_services.\"{number}\": a Messaging Service SID starts with MG"
                ));
            }
        }
        Ok(())
    }
}

/// Twilio-compatible provider.
pub struct Twilio {
    config: TwilioConfig,
    status_callback: String,
    http: reqwest::Client,
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(
    params: &'a [(String, String)],
    name: &'static str,
) -> Result<&'a str, ProviderError> {
    get(params, name)
        .filter(|v| !v.trim().is_empty())
        .ok_or(ProviderError::Missing(name))
}

/// `MessageSid` (or the legacy `SmsSid`).
fn message_sid(params: &[(String, String)]) -> Result<String, ProviderError> {
    required(params, "MessageSid")
        .or_else(|_| required(params, "SmsSid"))
        .map(str::to_owned)
        .map_err(|_| ProviderError::Missing("MessageSid"))
}

impl Twilio {
    /// A provider whose status callbacks go to `status_callback`.
    pub fn new(config: TwilioConfig, status_callback: String) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self {
            config,
            status_callback,
            http,
        }
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_sid
        )
    }

    async fn send_once(&self, msg: &OutboundSms) -> Result<reqwest::Response, reqwest::Error> {
        let mut form = vec![
            ("To", msg.to.as_str()),
            ("From", msg.from.as_str()),
            ("Body", msg.body.as_str()),
            ("StatusCallback", self.status_callback.as_str()),
        ];
        if let Some(service) = self.config.messaging_services.get(&msg.from) {
            form.push(("MessagingServiceSid", service.as_str()));
        }
        let body = serde_urlencoded::to_string(form).unwrap_or_default();
        let (user, password) = self.config.api_credentials();
        self.http
            .post(self.messages_url())
            .basic_auth(user, Some(password))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
    }

    async fn send_with_retries(&self, msg: &OutboundSms) -> SendResult {
        const ATTEMPTS: u32 = 4;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = match self.send_once(msg).await {
                Ok(r) => r,
                // Nothing reached the provider: safe to try again.
                Err(e) if e.is_connect() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    continue;
                }
                Err(e) if e.is_connect() => {
                    return SendResult::Failed {
                        code: None,
                        message: format!("provider unreachable: {e}"),
                    }
                }
                Err(e) => {
                    return SendResult::Unknown {
                        message: format!("no answer from the provider: {e}"),
                    }
                }
            };
            let status = response.status();
            if status.as_u16() == 429 && attempt < ATTEMPTS {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(10);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            #[derive(Deserialize)]
            struct Answer {
                sid: Option<String>,
                code: Option<u32>,
                message: Option<String>,
            }
            let answer: Option<Answer> = response.json().await.ok();
            return if status.is_success() {
                match answer.and_then(|a| a.sid) {
                    Some(sid) => SendResult::Accepted { sid },
                    None => SendResult::Unknown {
                        message: "provider accepted without a message id".into(),
                    },
                }
            } else if status.is_server_error() {
                SendResult::Unknown {
                    message: format!("provider answered {status}"),
                }
            } else {
                let (code, message) = answer.map_or((None, String::new()), |a| {
                    (a.code, a.message.unwrap_or_default())
                });
                SendResult::Failed {
                    code: code.or(if status.as_u16() == 429 {
                        Some(20429)
                    } else {
                        None
                    }),
                    message,
                }
            };
        }
    }
}

/// One page of `GET …/Messages.json`.
#[derive(Deserialize)]
struct MessagePage {
    #[serde(default)]
    messages: Vec<ListedTwilio>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct ListedTwilio {
    sid: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_code: Option<u32>,
}

/// Pages read at most when listing (50 messages each): a longer list between the
/// same two numbers in the window is not searched further.
const LIST_PAGES: usize = 4;

impl Twilio {
    async fn list_messages(
        &self,
        from: &str,
        to: &str,
        since: sms_core::Timestamp,
    ) -> Result<Vec<ListedMessage>, String> {
        // Whole seconds (`YYYY-MM-DDTHH:MM:SSZ`), a little before the send was
        // queued (clock skew between us and the provider).
        let after = sms_core::Timestamp::from_millis((since.as_millis() / 1000 - 300) * 1000);
        let query = [
            ("To", to.to_owned()),
            ("From", from.to_owned()),
            ("DateSent>", after.to_string()),
            ("PageSize", "50".to_owned()),
        ];
        let (user, password) = self.config.api_credentials();
        let mut url = format!(
            "{}?{}",
            self.messages_url(),
            serde_urlencoded::to_string(query).map_err(|e| e.to_string())?
        );
        let mut out = Vec::new();
        for _ in 0..LIST_PAGES {
            let response = self
                .http
                .get(&url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .map_err(|e| format!("provider unreachable: {e}"))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("provider answered {status} to the message list"));
            }
            let page: MessagePage = response
                .json()
                .await
                .map_err(|e| format!("message list: {e}"))?;
            out.extend(page.messages.into_iter().map(|m| ListedMessage {
                sid: m.sid,
                from: m.from.unwrap_or_default(),
                to: m.to.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                status: m.status.as_deref().and_then(DeliveryStatus::parse),
                error_code: m.error_code,
            }));
            match page.next_page_uri.filter(|u| u.starts_with('/')) {
                Some(next) => url = format!("{}{next}", self.config.base_url.trim_end_matches('/')),
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}

impl Provider for Twilio {
    fn verify(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<(), &'static str> {
        let signature = signature.ok_or("missing X-Twilio-Signature")?;
        if signature::verify(
            self.config.auth_token.expose_secret(),
            url,
            params,
            signature,
        ) {
            Ok(())
        } else {
            Err("X-Twilio-Signature does not match")
        }
    }

    fn parse_inbound(&self, params: &[(String, String)]) -> Result<InboundSms, ProviderError> {
        let num_media: usize = match get(params, "NumMedia").map(str::trim) {
            None | Some("") => 0,
            Some(n) => n.parse().map_err(|_| ProviderError::Invalid {
                field: "NumMedia",
                value: n.to_owned(),
            })?,
        };
        let media = (0..num_media.min(10))
            .filter_map(|i| {
                let url = get(params, &format!("MediaUrl{i}"))?;
                let content_type = get(params, &format!("MediaContentType{i}"))
                    .unwrap_or("application/octet-stream");
                Some(Media {
                    url: url.to_owned(),
                    content_type: content_type.to_owned(),
                })
            })
            .collect();
        Ok(InboundSms {
            message_sid: message_sid(params)?,
            from: required(params, "From")?.trim().to_owned(),
            to: required(params, "To")?.trim().to_owned(),
            body: get(params, "Body").unwrap_or_default().to_owned(),
            media,
        })
    }

    fn parse_status(&self, params: &[(String, String)]) -> Result<StatusReport, ProviderError> {
        let raw = required(params, "MessageStatus")
            .or_else(|_| required(params, "SmsStatus"))
            .map_err(|_| ProviderError::Missing("MessageStatus"))?;
        let status = DeliveryStatus::parse(raw).ok_or_else(|| ProviderError::Invalid {
            field: "MessageStatus",
            value: raw.to_owned(),
        })?;
        let error_code = match get(params, "ErrorCode").map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(c.parse().map_err(|_| ProviderError::Invalid {
                field: "ErrorCode",
                value: c.to_owned(),
            })?),
        };
        Ok(StatusReport {
            message_sid: message_sid(params)?,
            status,
            error_code,
            error_message: get(params, "ErrorMessage")
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            from: get(params, "From").unwrap_or_default().trim().to_owned(),
            to: get(params, "To").unwrap_or_default().trim().to_owned(),
        })
    }

    fn send<'a>(&'a self, msg: &'a OutboundSms) -> BoxFuture<'a, SendResult> {
        Box::pin(self.send_with_retries(msg))
    }

    fn list<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        since: sms_core::Timestamp,
    ) -> BoxFuture<'a, Result<Vec<ListedMessage>, String>> {
        Box::pin(self.list_messages(from, to, since))
    }
}
