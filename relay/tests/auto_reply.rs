//! HELP / INFO auto-replies and opt-out confirmations (F5): each reply is an ordinary
//! outbound message of the conversation (sent by the worker, logged as `outbound` by
//! `auto_reply`, followed by its delivery reports), never to a short code or an
//! alphanumeric sender, once per inbound message. Run on both backends.

mod common;

use std::time::Duration;

use common::Relay;
use serde_json::{json, Value};
use sms_core::autoreply::AutoReply;
use sms_relay::config::Config;

const ASHA_ORG: &str = "+14155550100";
const NORTH_ORG: &str = "+14155550101";
const PRIYA: &str = "+919812345678";

/// The demo configuration's replies (`relay/demo/relay.toml`).
fn demo_replies() -> AutoReply {
    let demo: Config = toml::from_str(include_str!("../demo/relay.toml")).expect("demo config");
    assert!(!demo.auto_reply.provider_handles_opt_out);
    demo.auto_reply
}

fn help_of(replies: &AutoReply, number: &str) -> String {
    replies
        .for_number(number, Some("IN"))
        .help
        .expect("a help text")
        .to_owned()
}

async fn demo_relay() -> Relay {
    Relay::start_demo(|c| c.auto_reply = demo_replies()).await
}

/// Polls (bounded) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// The automatic replies `seller` sees in the log.
async fn auto_replies(relay: &Relay, seller: &str) -> Vec<Value> {
    relay
        .events(seller)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "outbound" && e["by"] == "auto_reply")
        .collect()
}

/// The delivery statuses logged for `sid`, as `seller` sees them.
async fn statuses(relay: &Relay, seller: &str, sid: &str) -> Vec<String> {
    relay
        .events(seller)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "delivery" && e["message_sid"] == sid)
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the phone at `number` holds `n` messages, then a little longer to see
/// that no more come.
async fn phone_settles(relay: &Relay, number: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} messages on {number}"), || async {
        relay.phone_messages(number).await.len() >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = relay.phone_messages(number).await;
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

#[tokio::test]
async fn help_and_info_get_the_numbers_reply_as_an_outbound_message_with_its_reports() {
    let relay = demo_relay().await;
    let replies = demo_replies();
    let r = relay.inbound("SMhelp1", PRIYA, ASHA_ORG, " help ").await;
    assert_eq!(r.status(), 200);
    let phone = phone_settles(&relay, PRIYA, 1).await;
    assert_eq!(phone[0]["from"], ASHA_ORG);
    assert_eq!(phone[0]["body"], help_of(&replies, ASHA_ORG).as_str());
    let sid = phone[0]["sid"].as_str().unwrap().to_owned();
    // An ordinary outbound message of the conversation, by the system sender.
    eventually("the reply is logged", || async {
        auto_replies(&relay, "asha").await.len() == 1
    })
    .await;
    let logged = auto_replies(&relay, "asha").await;
    let o = &logged[0];
    assert_eq!(o["client_ref"], "auto:SMhelp1");
    assert_eq!(o["message_sid"], sid.as_str());
    assert_eq!(
        (o["from"].as_str(), o["to"].as_str()),
        (Some(ASHA_ORG), Some(PRIYA))
    );
    assert_eq!(o["record_id"], "contact:priya");
    assert_eq!(o["outcome"], "accepted");
    // The inbound message comes first, the reply after it; then its delivery reports.
    let events = relay.events("asha").await;
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    assert!(
        at(&|e| e["kind"] == "inbound" && e["message_sid"] == "SMhelp1")
            < at(&|e| e["kind"] == "outbound" && e["client_ref"] == "auto:SMhelp1")
    );
    eventually("sent, then delivered", || async {
        statuses(&relay, "asha", &sid).await == ["sent", "delivered"]
    })
    .await;

    // INFO to the north team's number: that number's own text, seen by its team.
    relay.inbound("SMinfo1", PRIYA, NORTH_ORG, "INFO").await;
    let phone = phone_settles(&relay, PRIYA, 2).await;
    assert_eq!(phone[1]["from"], NORTH_ORG);
    assert_eq!(phone[1]["body"], help_of(&replies, NORTH_ORG).as_str());
    assert_ne!(phone[0]["body"], phone[1]["body"]);
    eventually("ravi (north) sees the reply", || async {
        auto_replies(&relay, "ravi")
            .await
            .iter()
            .any(|e| e["client_ref"] == "auto:SMinfo1")
    })
    .await;
    // Not a keyword: no reply.
    relay.inbound("SMhelpme", PRIYA, ASHA_ORG, "help me").await;
    phone_settles(&relay, PRIYA, 2).await;
}

#[tokio::test]
async fn stop_is_confirmed_once_although_opted_out_and_start_is_confirmed() {
    let relay = demo_relay().await;
    let config = demo_replies();
    let replies = config.for_number(ASHA_ORG, Some("IN"));
    relay.inbound("SMstop1", PRIYA, ASHA_ORG, "STOP").await;
    let phone = phone_settles(&relay, PRIYA, 1).await;
    assert_eq!(phone[0]["body"], replies.stop.unwrap());
    assert!(relay
        .events("asha")
        .await
        .iter()
        .any(|e| e["kind"] == "consent_changed" && e["consent"] == "opted_out"));
    eventually("the confirmation is logged", || async {
        auto_replies(&relay, "asha").await.len() == 1
    })
    .await;
    // The confirmation went out; a seller's send is still refused.
    let r = relay
        .post_json(
            "/messages",
            "asha",
            json!({"from": ASHA_ORG, "to": PRIYA, "body": "still there?", "client_ref": "c1",
                   "record_id": "contact:priya"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], 21610);
    // Another STOP, or HELP, while opted out: nothing more.
    relay.inbound("SMstop2", PRIYA, ASHA_ORG, "stop").await;
    relay.inbound("SMhelp2", PRIYA, ASHA_ORG, "HELP").await;
    phone_settles(&relay, PRIYA, 1).await;
    // START opts back in and is confirmed.
    relay.inbound("SMstart1", PRIYA, ASHA_ORG, "Start").await;
    let phone = phone_settles(&relay, PRIYA, 2).await;
    assert_eq!(phone[1]["body"], replies.start.unwrap());
    let logged: Vec<String> = auto_replies(&relay, "asha")
        .await
        .iter()
        .map(|e| e["client_ref"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, ["auto:SMstop1", "auto:SMstart1"]);
}

#[tokio::test]
async fn no_reply_to_a_short_code_or_an_alphanumeric_sender() {
    let relay = demo_relay().await;
    for (sid, sender) in [
        ("SMsc1", "12345"),
        ("SMsc2", "898211"),
        ("SMan1", "ACMEBANK"),
    ] {
        for (n, body) in ["HELP", "STOP", "START"].iter().enumerate() {
            let r = relay
                .inbound(&format!("{sid}-{n}"), sender, ASHA_ORG, body)
                .await;
            assert_eq!(r.status(), 200, "{sender} {body}");
        }
    }
    // A real number after them: its reply comes, and is the only message sent.
    relay.inbound("SMreal", PRIYA, ASHA_ORG, "HELP").await;
    phone_settles(&relay, PRIYA, 1).await;
    let all: Vec<Value> = relay
        .http
        .get(format!("{}/demo/phone/messages", relay.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    let logged = auto_replies(&relay, "asha").await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["client_ref"], "auto:SMreal");
    // The senders' messages themselves were logged.
    let inbound = relay
        .events("asha")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "inbound")
        .count();
    assert_eq!(inbound, 10);
}

#[tokio::test]
async fn the_same_help_webhook_delivered_twice_is_answered_once() {
    let relay = demo_relay().await;
    // Twice in a row, then twice at once.
    relay.inbound("SMtwice", PRIYA, ASHA_ORG, "HELP").await;
    relay.inbound("SMtwice", PRIYA, ASHA_ORG, "HELP").await;
    let (a, b) = tokio::join!(
        relay.inbound("SMrace", PRIYA, ASHA_ORG, "INFO"),
        relay.inbound("SMrace", PRIYA, ASHA_ORG, "INFO"),
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    phone_settles(&relay, PRIYA, 2).await;
    eventually("both replies logged", || async {
        auto_replies(&relay, "asha").await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged: Vec<String> = auto_replies(&relay, "asha")
        .await
        .iter()
        .map(|e| e["client_ref"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, ["auto:SMtwice", "auto:SMrace"]);
}

#[tokio::test]
async fn by_default_the_provider_confirms_opt_outs_and_nothing_else_is_configured() {
    // No [auto_reply]: HELP, STOP and START get nothing from the relay.
    let relay = Relay::start_demo(|_| {}).await;
    relay.inbound("SMd1", PRIYA, ASHA_ORG, "HELP").await;
    relay.inbound("SMd2", PRIYA, ASHA_ORG, "STOP").await;
    relay.inbound("SMd3", PRIYA, ASHA_ORG, "START").await;
    // Texts, but the provider confirms opt-outs (the default): HELP only.
    let texts = AutoReply {
        provider_handles_opt_out: true,
        ..demo_replies()
    };
    let other = Relay::start_demo(move |c| c.auto_reply = texts).await;
    other.inbound("SMp1", PRIYA, ASHA_ORG, "STOP").await;
    other.inbound("SMp2", PRIYA, ASHA_ORG, "START").await;
    other.inbound("SMp3", PRIYA, ASHA_ORG, "HELP").await;
    let phone = phone_settles(&other, PRIYA, 1).await;
    assert_eq!(
        phone[0]["body"],
        help_of(&demo_replies(), ASHA_ORG).as_str()
    );
    assert!(relay.phone_messages(PRIYA).await.is_empty());
    assert!(auto_replies(&relay, "asha").await.is_empty());
}

#[tokio::test]
async fn replies_go_only_to_the_countries_sends_may_go_to() {
    // Sends may go to +1 only: a HELP from India is logged but not answered.
    let relay = Relay::start_demo(|c| {
        c.auto_reply = demo_replies();
        c.limits.allowed_country_codes = vec![1];
    })
    .await;
    const US_CUSTOMER: &str = "+14155552671";
    relay.inbound("SMin", PRIYA, ASHA_ORG, "HELP").await;
    relay.inbound("SMus", US_CUSTOMER, ASHA_ORG, "HELP").await;
    phone_settles(&relay, US_CUSTOMER, 1).await;
    assert!(relay.phone_messages(PRIYA).await.is_empty());
}

#[tokio::test]
async fn the_webhook_is_answered_before_the_provider_is_called() {
    let relay = demo_relay().await;
    // The provider takes 2 s to answer a send: the webhook does not wait for it.
    assert_eq!(
        relay.fault(json!({"send_delay_ms": 2000})).await.status(),
        204
    );
    let started = std::time::Instant::now();
    let r = relay.inbound("SMslow", PRIYA, ASHA_ORG, "HELP").await;
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered in {:?}",
        started.elapsed()
    );
    assert!(
        auto_replies(&relay, "asha").await.is_empty(),
        "not sent yet"
    );
    let phone = phone_settles(&relay, PRIYA, 1).await;
    eventually("the reply is logged with its outcome", || async {
        auto_replies(&relay, "asha")
            .await
            .iter()
            .any(|e| e["message_sid"] == phone[0]["sid"] && e["outcome"] == "accepted")
    })
    .await;
}
