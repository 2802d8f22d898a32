//! Server-Sent Events for browsers (`GET /events`) and a finite page of the same
//! events for the service worker (`GET /events/page`).
//!
//! A client resumes from `Last-Event-ID` or `?since=` (`<epoch>:<id>`). It gets the
//! events it may see after that id from the log, then one `caught_up` notice (SSE
//! event type `caught_up`, with the log's head), then live ones, in order, each
//! once. A client of another epoch first gets `{"kind":"reset"}` and a replay from
//! the start (S4). A client that falls behind the live buffer is disconnected and
//! resumes from its last id; it never blocks others. A client at a position whose
//! following events were pruned gets `410 snapshot_required` (X10).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::auth::{Seller, SellerAuth};
use crate::error::ApiError;
use crate::model::{EventsPage, LoggedEvent, StreamNotice};

/// `?since=` and `?limit=`.
#[derive(Debug, Deserialize)]
pub struct Since {
    pub(crate) since: Option<String>,
    pub(crate) limit: Option<usize>,
}

/// Where a client resumes: `(epoch it knew, last id it applied)`.
fn parse_position(text: &str) -> Option<(Option<String>, i64)> {
    let text = text.trim();
    match text.split_once(':') {
        Some((epoch, id)) => Some((Some(epoch.to_owned()), id.parse().ok()?)),
        None => Some((None, text.parse().ok()?)),
    }
}

/// The id to replay after, and whether the client must be told to resynchronise.
pub(crate) fn resume_point(known: Option<(Option<String>, i64)>, epoch: &str) -> (i64, bool) {
    match known {
        None => (0, false),
        Some((Some(e), _)) if e != epoch => (0, true),
        Some((_, id)) => (id.max(0), false),
    }
}

pub(crate) fn position(headers: &HeaderMap, q: &Since) -> Option<(Option<String>, i64)> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_position)
        .or_else(|| q.since.as_deref().and_then(parse_position))
}

pub(crate) fn sse_event(e: &LoggedEvent, json: String) -> Event {
    Event::default().id(e.sse_id()).data(json)
}

/// A stream notice. `reset` goes on the default event type (consumers hand it to
/// `ingestMany`, which understands it); `caught_up` goes as its own event type, so an
/// `onmessage` consumer of logged events never sees it, and without an id, so it
/// never moves `Last-Event-ID`.
pub(crate) fn notice_event(n: &StreamNotice) -> Event {
    let data = serde_json::to_string(n).unwrap_or_default();
    match n {
        StreamNotice::Reset { .. } => Event::default().data(data),
        StreamNotice::CaughtUp { .. } => Event::default().event(n.kind()).data(data),
    }
}

/// A logged event as `seller` receives it: a directory event is narrowed to their part
/// of the directory (X5), judged on the state now; every other event is sent as logged
/// (its audience was decided when it was logged).
pub(crate) async fn for_seller(
    app: &App,
    seller: &str,
    e: LoggedEvent,
) -> Result<LoggedEvent, ApiError> {
    if !e.body.changes_directory() {
        return Ok(e);
    }
    let seller = seller.to_owned();
    let LoggedEvent { epoch, id, body } = e;
    let body = app
        .seq
        .query(move |s| s.directory_lens(&seller).event(&body, s.directory()))
        .await?;
    Ok(LoggedEvent { epoch, id, body })
}

const PAGE: usize = 500;
const CLIENT_BUFFER: usize = 1024;

/// `GET /events`: the seller's event stream.
pub async fn events(
    State(app): State<Arc<App>>,
    who: SellerAuth,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Response {
    if app.fault.events_unavailable() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "events are unavailable (fault switch)",
        )
        .into_response();
    }
    let seller = who.seller.clone();
    // A stream lasts while its credentials do: it ends when the seller leaves the
    // directory, when its session is signed out, or when its bearer assertion expires.
    let mut revoked = app.gate.watch();
    let expiry = who.expires_ms.map(|ms| {
        let left = (ms - crate::sequencer::now().as_millis()).max(0) as u64;
        tokio::time::Instant::now() + Duration::from_millis(left)
    });
    let app_for_check = app.clone();
    // Subscribe before reading the log, so nothing falls between the two.
    let mut live = app.seq.subscribe(&seller);
    let mut epoch_rx = app.seq.epoch();
    let epoch = epoch_rx.borrow_and_update().clone();
    let (mut last, reset) = resume_point(position(&headers, &q), &epoch);
    // A position whose following events were pruned: a snapshot, not a stream that
    // silently skips them (X10). A prune after this check ends the stream below;
    // the client's reconnection gets this answer.
    let r = app.reader.clone();
    match tokio::task::spawn_blocking(move || r.pruned()).await {
        Ok(Ok(through)) if !sms_core::relay::retention::can_resume(last, through) => {
            return ApiError::snapshot_required(through).into_response();
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return ApiError::from(e).into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(CLIENT_BUFFER);
    let reader = app.reader.clone();
    let mut closing = app.closing.clone();
    let mut fault = app.fault.watch();
    // At most N streams per seller: a newer one closes the oldest (X4).
    let slot = app.streams.open(&seller);
    tokio::spawn(async move {
        let _counted = crate::metrics::SseClient::open();
        let _ = tx
            .send(Ok(Event::default()
                .retry(Duration::from_secs(2))
                .comment("hello")))
            .await;
        if reset {
            let notice = StreamNotice::Reset {
                epoch: epoch.clone(),
            };
            if tx.send(Ok(notice_event(&notice))).await.is_err() {
                return;
            }
        }
        // The head now: the replay below covers at least up to it.
        let r = reader.clone();
        let Ok(Ok(head)) = tokio::task::spawn_blocking(move || r.head()).await else {
            return;
        };
        // Replay from the log, a page at a time.
        loop {
            let (r, s) = (reader.clone(), seller.clone());
            let page = match tokio::task::spawn_blocking(move || r.since(&s, last, PAGE)).await {
                Ok(Ok(page)) => page,
                _ => return,
            };
            let done = page.len() < PAGE;
            for e in page {
                last = e.id;
                let Ok(e) = for_seller(&app_for_check, &seller, e).await else {
                    return;
                };
                let json = serde_json::to_string(&e).unwrap_or_default();
                if tx.send(Ok(sse_event(&e, json))).await.is_err() {
                    return;
                }
            }
            if done {
                break;
            }
        }
        // The replay is over: say so once, with the head it reached (E4).
        let notice = StreamNotice::CaughtUp {
            head: format!("{epoch}:{}", head.max(last)),
            epoch: epoch.clone(),
        };
        if tx.send(Ok(notice_event(&notice))).await.is_err() {
            return;
        }
        // Then live events.
        loop {
            tokio::select! {
                msg = live.recv() => match msg {
                    Ok(p) => {
                        if p.event.id <= last || !p.audience.includes(&seller) || p.event.epoch != epoch {
                            continue;
                        }
                        last = p.event.id;
                        let event = if p.event.body.changes_directory() {
                            let Ok(e) = for_seller(&app_for_check, &seller, p.event.clone()).await else {
                                return;
                            };
                            let json = serde_json::to_string(&e).unwrap_or_default();
                            sse_event(&e, json)
                        } else {
                            sse_event(&p.event, p.json.clone())
                        };
                        if tx.try_send(Ok(event)).is_err() {
                            tracing::info!(%seller, "slow SSE client disconnected; it resumes from its last id");
                            return;
                        }
                    }
                    // Lagged or closed: drop the stream; the client resumes from its last id.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                notice = revoked.recv() => {
                    let concerns_us = match &notice {
                        Ok(Some(s)) => *s == seller,
                        Ok(None) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => false,
                    };
                    if concerns_us && !still_allowed(&app_for_check, &who).await {
                        tracing::info!(%seller, "credentials revoked: event stream closed");
                        return;
                    }
                }
                () = until(expiry) => return,
                () = slot.closed() => {
                    tracing::info!(%seller, "a newer event stream took this one's place");
                    return;
                }
                _ = epoch_rx.changed() => return,
                _ = closing.changed() => return,
                _ = fault.changed() => return,
                () = tx.closed() => return,
            }
        }
    });
    let mut response = Sse::new(ReceiverStream::new(rx))
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("heartbeat"),
        )
        .into_response();
    // A reverse proxy (nginx) must pass events on at once, not buffer them.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Whether a stream's credentials still hold: an active seller, and for a cookie
/// stream, a live session.
async fn still_allowed(app: &Arc<App>, who: &SellerAuth) -> bool {
    if !app.gate.is_active(&who.seller) {
        return false;
    }
    let Some(id) = who.session.clone() else {
        return true;
    };
    let reader = app.reader.clone();
    let now_ms = crate::sequencer::now().as_millis();
    matches!(
        tokio::task::spawn_blocking(move || reader.session(&id, now_ms)).await,
        Ok(Ok(Some((s, _)))) if s == who.seller
    )
}

/// `GET /events/page`: a finite page of events since an id (for the service worker).
pub async fn page(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Result<Json<EventsPage>, ApiError> {
    let epoch = app.seq.epoch().borrow().clone();
    let (after, reset) = resume_point(position(&headers, &q), &epoch);
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let reader = app.reader.clone();
    let who = seller.clone();
    let events = tokio::task::spawn_blocking(move || reader.since(&who, after, limit + 1))
        .await
        .map_err(ApiError::internal)??;
    let more = events.len() > limit;
    let mut page = Vec::with_capacity(limit.min(events.len()));
    for e in events.into_iter().take(limit) {
        page.push(for_seller(&app, &seller, e).await?);
    }
    let events = page;
    let next = events.last().map_or(after, |e| e.id);
    Ok(Json(EventsPage {
        next: format!("{epoch}:{next}"),
        epoch,
        reset,
        events,
        more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(parse_position("ab12:42"), Some((Some("ab12".into()), 42)));
        assert_eq!(parse_position("42"), Some((None, 42)));
        assert_eq!(parse_position("x"), None);
        assert_eq!(resume_point(Some((Some("e1".into()), 7)), "e1"), (7, false));
        assert_eq!(resume_point(Some((Some("e0".into()), 7)), "e1"), (0, true));
        assert_eq!(resume_point(Some((None, 7)), "e1"), (7, false));
        assert_eq!(resume_point(None, "e1"), (0, false));
    }
}
