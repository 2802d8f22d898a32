//! `GET /snapshot`: the history a seller can see, at one log position (E3, X10).
//!
//! Newline-delimited JSON ([`SnapshotLine`]): a `start` line (the position, how many
//! conversations follow, the seller's part of the directory), `conversations` lines
//! (each conversation with its latest page of messages, in key order), `older`
//! lines (the rest of each conversation's messages, oldest first), then an `end`
//! line with the counts. The store reads it all in one read transaction
//! ([`LogReader::snapshot`]) while the body streams: a slow client slows the read.
//! A read that fails midway ends the body without its `end` line; the client
//! takes the snapshot again.
//!
//! [`LogReader::snapshot`]: crate::store::LogReader::snapshot

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::auth::Seller;
use crate::error::ApiError;
use crate::store::{Keep, SnapshotPart};
use sms_core::protocol::{SnapshotConversation, SnapshotLine, SnapshotOlder, SnapshotStart};
use sms_core::relay::history::{ConversationKey, HistoryConversation, HistoryMessage};
use sms_core::relay::Sight;

/// Latest messages per conversation when `?page=` is not given.
pub const DEFAULT_PAGE: usize = 20;
/// Most latest messages per conversation a client may ask for.
pub const MAX_PAGE: usize = 200;

/// `?page=`: how many latest messages come with each conversation (1..=200).
#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    page: Option<usize>,
}

/// Parts read ahead of the client, and lines written ahead of it.
const AHEAD: usize = 4;

/// `503 snapshot_busy`: too many snapshots at once, or the directory kept changing
/// while one began; the client retries.
fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "snapshot_busy",
        "too many snapshots are being read, or the directory is changing; try again",
    )
    .with(serde_json::json!({ "retry_after": 1 }))
}

/// `GET /snapshot` (the seller's): see the module's documentation.
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Seller(seller): Seller,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let page = q.page.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    // A snapshot holds a database reader while its client reads: slow clients must
    // not take every reader (sign-in, sessions, replays use them too).
    let Ok(permit) = app.snapshots.clone().try_acquire_owned() else {
        return Err(busy());
    };
    let mut attempt = 0;
    let (sight, directory, first, mut parts, read) = loop {
        attempt += 1;
        // Visibility by the core's one rule (V1), from the sequencer, judged in the
        // store's read off its thread.
        let s = seller.clone();
        let sight = Arc::new(app.seq.query(move |state| state.sight(&s)).await?);
        let keep: Keep = {
            let sight = sight.clone();
            Arc::new(move |key: &ConversationKey| sight.sees(key))
        };
        let (parts_tx, mut parts) = mpsc::channel::<SnapshotPart>(AHEAD);
        let reader = app.reader.clone();
        let mut read = tokio::task::spawn_blocking(move || reader.snapshot(page, keep, parts_tx));
        // The head first, before answering: a store that fails at once is a 500,
        // not a cut stream.
        let Some(first) = parts.recv().await else {
            return Err(match (&mut read).await {
                Ok(Ok(())) => ApiError::internal("the snapshot read ended without its head"),
                Ok(Err(e)) => ApiError::from(e),
                Err(e) => ApiError::internal(e),
            });
        };
        // The directory and consent from a state at or after the head the read
        // fixed (a change after it is replayed from the position: no harm), and the
        // visibility it used must still hold; a directory change in between (rare)
        // takes the snapshot again.
        let s = seller.clone();
        let (now, directory) = app
            .seq
            .query(move |state| (state.sight(&s), state.directory_for(&s)))
            .await?;
        if now.sees_as(&sight) {
            break (Arc::new(now), directory, first, parts, read);
        }
        if attempt == 3 {
            // Never filtered with a visibility that no longer holds: the client retries.
            return Err(busy());
        }
        tracing::info!(%seller, "the directory changed while a snapshot began: taken again");
        // Dropping `parts` ends that read.
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(AHEAD);
    let mut lines = Lines {
        sight,
        directory: Some(directory),
        conversations: 0,
        messages: 0,
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut next = Some(first);
        while let Some(part) = next {
            if tx.send(Ok(line(&lines.line(part)))).await.is_err() {
                // The client went: dropping `parts` ends the read.
                return;
            }
            next = parts.recv().await;
        }
        match read.await {
            Ok(Ok(())) => {
                let end = SnapshotLine::End {
                    conversations: lines.conversations,
                    messages: lines.messages,
                };
                let _ = tx.send(Ok(line(&end))).await;
            }
            // No `end` line: the client sees the stream was cut and takes it again.
            Ok(Err(e)) => tracing::error!(%seller, error = %e, "snapshot read failed midway"),
            Err(e) => tracing::error!(%seller, error = %e, "snapshot read failed midway"),
        }
    });
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A reverse proxy (nginx) passes lines on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Turns the store's parts into lines, counting what went out.
struct Lines {
    sight: Arc<Sight>,
    directory: Option<sms_core::protocol::Directory>,
    conversations: u64,
    messages: u64,
}

impl Lines {
    fn line(&mut self, part: SnapshotPart) -> SnapshotLine {
        match part {
            SnapshotPart::Head {
                epoch,
                head,
                conversations,
            } => SnapshotLine::Start(SnapshotStart {
                position: format!("{epoch}:{head}"),
                epoch,
                conversations,
                directory: self.directory.take().unwrap_or_default(),
            }),
            SnapshotPart::Conversations(list) => SnapshotLine::Conversations {
                conversations: list
                    .into_iter()
                    .map(|(c, messages)| self.conversation(c, messages))
                    .collect(),
            },
            SnapshotPart::Older(key, messages) => {
                self.messages += messages.len() as u64;
                SnapshotLine::Older(SnapshotOlder {
                    org_number: key.org,
                    customer_number: key.customer,
                    record_id: key.record,
                    messages,
                })
            }
        }
    }

    fn conversation(
        &mut self,
        c: HistoryConversation,
        messages: Vec<HistoryMessage>,
    ) -> SnapshotConversation {
        self.conversations += 1;
        self.messages += messages.len() as u64;
        let consent = self.sight.consent(&c.key.org, &c.key.customer);
        SnapshotConversation {
            org_number: c.key.org,
            customer_number: c.key.customer,
            record_id: c.key.record,
            last: c.last,
            rule: c.rule,
            moves: c.moves,
            consent,
            messages,
        }
    }
}

/// One line of the body: the JSON and `\n`.
fn line(l: &SnapshotLine) -> Bytes {
    let mut out = serde_json::to_vec(l).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}
