//! The CRM's feed (F1): every logged event, whoever may see it, for the CRM's backend
//! (`GET /admin/events`, admin token). A JSON page shaped like `/events/page`, or with
//! `Accept: text/event-stream` the same events streamed: the log after `since`, one
//! `caught_up` notice, then live events, in log order, each once per stream. Events
//! are sent as logged (a directory event carries the whole change, not a seller's
//! part). A position whose following events were pruned gets `410 events_pruned`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::model::{EventsPage, StreamNotice};
use crate::sse::{notice_event, position, resume_point, sse_event, Since};
use crate::store::StoreError;

const PAGE: usize = 500;
const BUFFER: usize = 1024;

/// A store error as the feed answers it: a pruned position is `410 events_pruned`.
fn feed_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Pruned { through, .. } => ApiError::new(
            StatusCode::GONE,
            "events_pruned",
            "events after that position were pruned",
        )
        .with(serde_json::json!({ "pruned_through": through })),
        e => ApiError::from(e),
    }
}

/// `GET /admin/events`: a page of every event after `since`, or a stream of them.
pub async fn admin_events(
    State(app): State<Arc<App>>,
    _: Admin,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Response {
    let streamed = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if streamed {
        stream(app, &headers, &q).await
    } else {
        page(app, &headers, &q).await.into_response()
    }
}

async fn page(app: Arc<App>, headers: &HeaderMap, q: &Since) -> Result<Json<EventsPage>, ApiError> {
    let epoch = app.seq.epoch().borrow().clone();
    let (after, reset) = resume_point(position(headers, q), &epoch);
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let reader = app.reader.clone();
    let mut events = tokio::task::spawn_blocking(move || reader.all_since(after, limit + 1))
        .await
        .map_err(ApiError::internal)?
        .map_err(feed_error)?;
    let more = events.len() > limit;
    events.truncate(limit);
    let next = events.last().map_or(after, |e| e.id);
    Ok(Json(EventsPage {
        next: format!("{epoch}:{next}"),
        epoch,
        reset,
        events,
        more,
    }))
}

async fn stream(app: Arc<App>, headers: &HeaderMap, q: &Since) -> Response {
    // Subscribe before reading the log, so nothing falls between the two.
    let mut live = app.seq.subscribe_all();
    let mut epoch_rx = app.seq.epoch();
    let epoch = epoch_rx.borrow_and_update().clone();
    let (mut last, reset) = resume_point(position(headers, q), &epoch);
    let r = app.reader.clone();
    match tokio::task::spawn_blocking(move || r.all_since(last, 1)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return feed_error(e).into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(BUFFER);
    let mut closing = app.closing.clone();
    tokio::spawn(async move {
        if reset {
            let notice = StreamNotice::Reset {
                epoch: epoch.clone(),
            };
            if tx.send(Ok(notice_event(&notice))).await.is_err() {
                return;
            }
        }
        let r = app.reader.clone();
        let Ok(Ok(head)) = tokio::task::spawn_blocking(move || r.head()).await else {
            return;
        };
        loop {
            let r = app.reader.clone();
            let page = match tokio::task::spawn_blocking(move || r.all_since(last, PAGE)).await {
                Ok(Ok(page)) => page,
                _ => return, // pruned meanwhile, or the store failed: the client resumes
            };
            let done = page.len() < PAGE;
            for e in page {
                last = e.id;
                let json = serde_json::to_string(&e).unwrap_or_default();
                if tx.send(Ok(sse_event(&e, json))).await.is_err() {
                    return;
                }
            }
            if done {
                break;
            }
        }
        let notice = StreamNotice::CaughtUp {
            head: format!("{epoch}:{}", head.max(last)),
            epoch: epoch.clone(),
        };
        if tx.send(Ok(notice_event(&notice))).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                msg = live.recv() => match msg {
                    Ok(p) => {
                        if p.event.id <= last || p.event.epoch != epoch {
                            continue;
                        }
                        last = p.event.id;
                        if tx.try_send(Ok(sse_event(&p.event, p.json.clone()))).is_err() {
                            tracing::info!("slow CRM feed client disconnected; it resumes from its last id");
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = epoch_rx.changed() => return,
                _ = closing.changed() => return,
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
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}
