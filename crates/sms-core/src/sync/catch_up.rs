//! The service worker's catch-up on a push doorbell: fetch `/events/page` from the
//! stored position, ingest each page in runs, follow `more`, stop. No stream, no
//! timers, no retries: the next doorbell (or the page's own stream) picks up where
//! this one stopped, and ingest never applies anything twice.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Phase, Position, Progress};
use crate::protocol::{EventsPage, LoggedEvent};
use crate::store::IngestOutcome;

/// What happened, told to [`CatchUp::handle`].
#[derive(Clone, Debug)]
pub enum CatchUpInput {
    /// The page asked for by [`CatchUpAction::FetchPage`].
    Page(EventsPage),
    /// The page could not be had: its HTTP status, or `None` for a network error.
    FetchFailed {
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The last [`CatchUpAction::Ingest`] finished: one outcome per event.
    Ingested {
        /// What ingest said of each event.
        outcomes: Vec<IngestOutcome>,
    },
    /// The last [`CatchUpAction::Ingest`] threw.
    IngestFailed {
        /// The store error's code.
        code: String,
    },
}

/// What the worker must do, drained with [`CatchUp::poll`] in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CatchUpAction {
    /// `GET /events/page?since=&limit=`; answer [`CatchUpInput::Page`] or
    /// [`CatchUpInput::FetchFailed`].
    FetchPage {
        /// Where to resume (`<epoch>:<id>`, or `0` from the start).
        since: String,
        /// Events per page.
        limit: u32,
    },
    /// Forget the stored position (a new epoch) before the ingest that follows.
    ResetPosition,
    /// Apply these events in one run; answer [`CatchUpInput::Ingested`] or
    /// [`CatchUpInput::IngestFailed`].
    Ingest {
        /// Consecutive events.
        events: Vec<LoggedEvent>,
    },
    /// Catch-up progressed (when the doorbell gave the head).
    Progress(Progress),
    /// Finished; nothing more comes out.
    Done(CatchUpEnd),
}

/// How a catch-up ended: `{"end": "<snake_case code>", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum CatchUpEnd {
    /// Everything the relay had is applied.
    CaughtUp,
    /// The relay could not be asked (network error, 5xx, ...).
    Unavailable {
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The session is gone (401): the page must sign in.
    SignedOut,
    /// The events after the stored position were pruned (410): the page takes a
    /// snapshot when it next connects; a worker does not.
    SnapshotRequired,
    /// Events could not be stored.
    StorageProblem {
        /// The store error's code.
        code: String,
    },
    /// Ingest reported a gap or a new epoch mid-way: the next catch-up resumes.
    Interrupted,
}

/// One catch-up, from the stored position to the relay's head.
#[derive(Debug)]
pub struct CatchUp {
    position: Option<Position>,
    start: Option<Position>,
    head: Option<Position>,
    limit: u32,
    queue: VecDeque<LoggedEvent>,
    in_flight: Option<Vec<Position>>,
    next: Option<String>,
    finished: bool,
    progress: Option<Progress>,
    actions: VecDeque<CatchUpAction>,
}

impl CatchUp {
    /// Starts from the store's position; `head` (the doorbell's) gives progress a
    /// total; `limit` is the page size. The first action is the first page's fetch.
    pub fn new(position: Option<Position>, head: Option<Position>, limit: u32) -> Self {
        let since = position.as_ref().map_or("0".into(), Position::to_string);
        Self {
            start: position.clone(),
            position,
            head,
            limit,
            queue: VecDeque::new(),
            in_flight: None,
            next: None,
            finished: false,
            progress: None,
            actions: VecDeque::from([CatchUpAction::FetchPage { since, limit }]),
        }
    }

    /// The next action, oldest first.
    pub fn poll(&mut self) -> Option<CatchUpAction> {
        self.actions.pop_front()
    }

    /// Whether [`CatchUpAction::Done`] went out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Takes one input.
    pub fn handle(&mut self, input: CatchUpInput) {
        if self.finished {
            return;
        }
        match input {
            CatchUpInput::Page(page) => {
                if page.reset {
                    self.actions.push_back(CatchUpAction::ResetPosition);
                    self.position = None;
                    self.start = None;
                }
                self.queue.extend(page.events);
                self.next = page.more.then_some(page.next);
            }
            CatchUpInput::FetchFailed { status } => {
                return self.finish(match status {
                    Some(401) => CatchUpEnd::SignedOut,
                    Some(410) => CatchUpEnd::SnapshotRequired,
                    status => CatchUpEnd::Unavailable { status },
                })
            }
            CatchUpInput::Ingested { outcomes } => {
                let run = self.in_flight.take().unwrap_or_default();
                if outcomes.len() < run.len() || outcomes.iter().any(|o| o.gap || o.resync) {
                    return self.finish(CatchUpEnd::Interrupted);
                }
                self.position = run.into_iter().last().or(self.position.take());
                self.progress();
            }
            CatchUpInput::IngestFailed { code } => {
                return self.finish(CatchUpEnd::StorageProblem { code })
            }
        }
        self.drive();
    }

    fn drive(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        if let Some((events, positions)) = super::next_run(&mut self.queue) {
            self.in_flight = Some(positions);
            self.actions.push_back(CatchUpAction::Ingest { events });
        } else if let Some(since) = self.next.take() {
            self.actions.push_back(CatchUpAction::FetchPage {
                since,
                limit: self.limit,
            });
        } else {
            if let Some(head) = &self.head {
                let from = self.start.as_ref().map_or(0, |s| s.id);
                let total = (head.id - from).max(0) as u64;
                self.push_progress(total, Some(total));
            }
            self.finish(CatchUpEnd::CaughtUp);
        }
    }

    fn progress(&mut self) {
        let (Some(head), Some(at)) = (&self.head, &self.position) else {
            return;
        };
        if head.epoch != at.epoch {
            return;
        }
        let from = self.start.as_ref().map_or(0, |s| s.id);
        let total = (head.id - from).max(0) as u64;
        let done = ((at.id - from).max(0) as u64).min(total);
        self.push_progress(done, Some(total));
    }

    fn push_progress(&mut self, done: u64, total: Option<u64>) {
        let p = Progress {
            phase: Phase::CatchUp,
            done,
            total,
        };
        if self.progress.as_ref() != Some(&p) {
            self.progress = Some(p.clone());
            self.actions.push_back(CatchUpAction::Progress(p));
        }
    }

    fn finish(&mut self, end: CatchUpEnd) {
        self.finished = true;
        self.queue.clear();
        self.actions.push_back(CatchUpAction::Done(end));
    }
}
