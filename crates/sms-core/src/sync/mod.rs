//! The relay connection as a deterministic state machine (E1, E4, D1, S4, B4, P1).
//!
//! Shaped like quinn-proto and the [pane](crate::pane): [`SyncMachine::handle`] takes an
//! [`Input`] (what the browser saw: the stream opened, an event, an ingest finished,
//! the network came back, a timer fired) and `now` in ms; [`SyncMachine::poll`] hands out
//! the [`Action`]s the driver must carry out, in the order they were decided;
//! [`SyncMachine::poll_timeout`] says when to call `handle(Input::Timeout, now)` next. It
//! decides the stream position and epoch, runs of events to ingest (one in flight),
//! gaps and resyncs, reconnects with backoff and jitter, signing in again, caught-up
//! and progress, and when to flush the outbox. It does no IO, reads no clock and
//! draws no randomness (the jitter's seed is in [`Config`]).
//!
//! Also here: [`send_verdict`] (what a send's HTTP answer means for the outbox) and
//! [`CatchUp`] (the service worker's catch-up over `/events/page`).

mod backoff;
mod catch_up;
mod lines;
mod verdict;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::protocol::LoggedEvent;
pub use crate::protocol::{Position, StreamNotice};
use crate::store::run::run_end;
use crate::store::IngestOutcome;
pub use backoff::Backoff;
pub use catch_up::{CatchUp, CatchUpAction, CatchUpEnd, CatchUpInput};
pub use lines::Lines;
pub use verdict::{send_verdict, RetryCause, Verdict};

/// The next run to ingest from what the stream (or a page) delivered, in order, with
/// the positions it covers; `None` when nothing waits.
fn next_run(queue: &mut VecDeque<LoggedEvent>) -> Option<(Vec<LoggedEvent>, Vec<Position>)> {
    if queue.is_empty() {
        return None;
    }
    let end = run_end(queue.make_contiguous(), 0);
    let events: Vec<LoggedEvent> = queue.drain(..end).collect();
    let positions = events
        .iter()
        .map(|e| Position {
            epoch: e.epoch.clone(),
            id: e.id,
        })
        .collect();
    Some((events, positions))
}

/// Tunables; [`Config::default`] is what the module uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// First reconnect delay (ms).
    pub backoff_min_ms: u64,
    /// Longest reconnect delay (ms).
    pub backoff_max_ms: u64,
    /// How often the outbox is retried while anything waits (ms).
    pub outbox_retry_ms: u64,
    /// Seed for the reconnect jitter (e.g. from `Math.random()` once).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backoff_min_ms: 1_000,
            backoff_max_ms: 30_000,
            outbox_retry_ms: 10_000,
            seed: 1,
        }
    }
}

/// What happened, told to [`SyncMachine::handle`].
#[derive(Clone, Debug)]
pub enum Input {
    /// Start syncing from the position the store holds (`None`: nothing applied yet).
    Start {
        /// The store's position.
        position: Option<Position>,
    },
    /// Stop for good (`disconnect()`): the stream closes, no timer remains.
    Stop,
    /// The stream answered 200 and is open.
    StreamOpened,
    /// A logged event arrived on the stream.
    Event(LoggedEvent),
    /// A stream notice arrived (`reset`, `caught_up`).
    Notice(StreamNotice),
    /// The stream failed or ended: its HTTP status (204, 401, 503, ...) when known,
    /// `None` for a network error or a stream that closed.
    StreamFailed {
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The last [`Action::Ingest`] finished: one outcome per event, in order.
    Ingested {
        /// What ingest said of each event.
        outcomes: Vec<IngestOutcome>,
    },
    /// The last [`Action::Ingest`] threw (`quota_exceeded`, `write_refused`, ...):
    /// some of its first events may have been applied, none after the failing one.
    IngestFailed {
        /// The store error's code.
        code: String,
    },
    /// [`Action::SignIn`] got a fresh session.
    SignedIn,
    /// [`Action::SignIn`] failed, or there is no sign-in callback.
    SignInFailed,
    /// The browser went online (`online` event).
    Online,
    /// The browser went offline (`offline` event).
    Offline,
    /// How many sends wait in the outbox (after queueing one, or at start).
    OutboxWaiting {
        /// Sends waiting.
        count: u32,
    },
    /// The stream gave something this module cannot read (an event of a kind it does
    /// not know: a newer relay). Retrying would read it again: the page must reload.
    Unreadable,
    /// A send was just queued: flush now (unless the relay asked to wait, 429).
    Queued,
    /// The [`Action::FlushOutbox`] finished.
    Flushed {
        /// Sends still waiting.
        remaining: u32,
        /// The relay asked not to send before this time (ms; 429 `Retry-After`).
        not_before: Option<u64>,
    },
    /// The relay's head, learnt elsewhere (`GET /directory`, a push doorbell): lets
    /// catch-up progress have a total before `caught_up` arrives.
    Head(Position),
    /// [`Action::TakeSnapshot`] stored this many of the snapshot's conversations.
    SnapshotProgress {
        /// Conversations stored.
        done: u64,
        /// Conversations in the snapshot.
        total: u64,
    },
    /// [`Action::TakeSnapshot`] stored the whole snapshot and its position.
    SnapshotTaken {
        /// The position it reflects (now the store's).
        position: Position,
    },
    /// [`Action::TakeSnapshot`] failed (a store failure is [`Input::IngestFailed`]): its HTTP status when known (`None`: a network
    /// error or a stream cut before its end). A 404 is a relay without snapshots: the
    /// driver imported the directory instead, and the log is replayed from its start.
    SnapshotFailed {
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The time from [`SyncMachine::poll_timeout`] has come.
    Timeout,
}

/// What the driver must do, drained with [`SyncMachine::poll`] in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Open the event stream (`GET /events?since=`); answer with
    /// [`Input::StreamOpened`], then [`Input::Event`]s and [`Input::Notice`]s, or
    /// [`Input::StreamFailed`].
    OpenStream {
        /// Where to resume (`<epoch>:<id>`); `None`: from the start.
        since: Option<String>,
    },
    /// Close the stream now and drop what it still has buffered: nothing more of it
    /// may be handed in (the next stream replays it).
    CloseStream,
    /// Apply these events in one run (`ingestMany`); answer [`Input::Ingested`] or
    /// [`Input::IngestFailed`]. At most one is in flight.
    Ingest {
        /// Consecutive events, at most `MAX_RUN`; a directory event goes alone.
        events: Vec<LoggedEvent>,
    },
    /// Forget the stored position (a new epoch, S4) before doing what follows.
    ResetPosition,
    /// Take the relay's snapshot (`GET /snapshot`, E3): store it line by line, the
    /// position last; answer [`Input::SnapshotProgress`] as it goes, then
    /// [`Input::SnapshotTaken`] or [`Input::SnapshotFailed`]. For a device with no
    /// position, a new epoch, or a position whose events were pruned (410).
    TakeSnapshot,
    /// Call the page's sign-in callback; answer [`Input::SignedIn`] or
    /// [`Input::SignInFailed`].
    SignIn,
    /// Send what waits in the outbox (judging each answer with [`send_verdict`]);
    /// answer [`Input::Flushed`]. At most one is in flight.
    FlushOutbox,
    /// The connection's status changed.
    Status(Status),
    /// Catch-up progressed.
    Progress(Progress),
}

/// The connection as the seller sees it: `{"status": "<snake_case code>", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Opening the stream.
    Connecting,
    /// Connected, applying what the relay owed this device.
    CatchingUp,
    /// Connected and caught up.
    Live,
    /// Not connected; the next attempt is at `retry_at` (ms).
    Reconnecting {
        /// When the next attempt goes out.
        retry_at: u64,
    },
    /// The browser is offline.
    Offline,
    /// Events could not be stored (storage full, ...); retried later from the last
    /// applied position.
    StorageProblem {
        /// The store error's code (`quota_exceeded`, `write_refused`, ...).
        code: String,
    },
    /// The session is gone and signing in again failed.
    SignedOut,
    /// The relay sent what this module cannot read: a newer version is needed (reload).
    UpdateRequired,
}

/// What a long piece of work is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Importing the directory (a new device, or after a new epoch); counts records.
    Directory,
    /// Storing the relay's snapshot; counts conversations.
    Snapshot,
    /// Applying the events the relay owed this device.
    CatchUp,
}

/// How far a long piece of work is (E4). For catch-up, `done` and `total` count log
/// positions from where it started, not the seller's events (the relay skips what
/// they may not see); `total` is `None` while the relay's head is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Which work.
    pub phase: Phase,
    /// How much is done.
    pub done: u64,
    /// How much there is, when known.
    pub total: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    /// Not connected, nothing scheduled (not started, stopped, offline, signed out).
    Idle,
    /// Not connected; open at `until` (and once no ingest is in flight).
    Waiting { until: u64 },
    /// `OpenStream` went out.
    Opening,
    /// The stream is open.
    Open,
    /// `SignIn` went out.
    SigningIn,
    /// `TakeSnapshot` went out.
    Snapshot,
}

/// The sync machine (not named `Sync`: that would shadow the marker trait). Inputs go to [`handle`](Self::handle); actions come out of
/// [`poll`](Self::poll), oldest first; [`poll_timeout`](Self::poll_timeout) is the next
/// wake-up. Carry actions out in order: `ResetPosition` completes before the
/// `OpenStream` after it.
#[derive(Debug)]
pub struct SyncMachine {
    config: Config,
    backoff: Backoff,
    /// Between `Start` and `Stop`.
    started: bool,
    /// `disconnect()`: nothing more happens, whatever comes in later.
    stopped: bool,
    /// The stream carried something unreadable: stay stopped until a reload.
    unreadable: bool,
    /// Signed in again since the stream was last live: a 401 now means the sign-in did
    /// not give a session, and asking again would loop.
    fresh_session: bool,
    conn: Conn,
    /// The store's position as far as this machine knows (never ahead of it).
    position: Option<Position>,
    /// The stored position must be forgotten before the next stream opens.
    reset_needed: bool,
    /// The events after the position were pruned (410): a snapshot before the stream.
    snapshot_needed: bool,
    /// The relay has no snapshots (404): a new device replays the log from its start.
    no_snapshot: bool,
    /// The snapshot being stored: conversations done and in all.
    snapshot_progress: Option<(u64, u64)>,
    /// A snapshot was just stored and its stream is opening: still catching up.
    after_snapshot: bool,
    /// Events received and not yet handed to ingest, in order.
    queue: VecDeque<LoggedEvent>,
    /// The run being ingested: its events' positions.
    in_flight: Option<Vec<Position>>,
    /// Events of this stream received / ingested (the caught-up marker counts them).
    received: u64,
    ingested: u64,
    /// `caught_up` came after this many events of the stream.
    caught_up_after: Option<u64>,
    live: bool,
    /// Where this stream's catch-up started, and the relay's head if known.
    start: Option<Position>,
    head: Option<Position>,
    storage_problem: Option<String>,
    offline: bool,
    signed_out: bool,
    outbox: u32,
    flushing: bool,
    flush_again: bool,
    flush_at: Option<u64>,
    /// No flush before this time (ms): the relay's `Retry-After`.
    not_before: u64,
    actions: VecDeque<Action>,
    status: Option<Status>,
    progress: Option<Progress>,
}

impl SyncMachine {
    /// A machine that does nothing until [`Input::Start`].
    pub fn new(config: Config) -> Self {
        Self {
            backoff: Backoff::new(config.backoff_min_ms, config.backoff_max_ms, config.seed),
            config,
            started: false,
            stopped: false,
            unreadable: false,
            fresh_session: false,
            conn: Conn::Idle,
            position: None,
            reset_needed: false,
            snapshot_needed: false,
            no_snapshot: false,
            snapshot_progress: None,
            after_snapshot: false,
            queue: VecDeque::new(),
            in_flight: None,
            received: 0,
            ingested: 0,
            caught_up_after: None,
            live: false,
            start: None,
            head: None,
            storage_problem: None,
            offline: false,
            signed_out: false,
            outbox: 0,
            flushing: false,
            flush_again: false,
            flush_at: None,
            not_before: 0,
            actions: VecDeque::new(),
            status: None,
            progress: None,
        }
    }

    /// The status as last announced.
    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }

    /// Whether the relay serves snapshots (not known otherwise until one answered 404):
    /// without them, a new epoch needs the directory imported before the log replays.
    pub fn takes_snapshots(&self) -> bool {
        !self.no_snapshot
    }

    /// Whether `Stop` came: nothing more happens.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The position the machine would resume from.
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// The next action, oldest first.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call `handle(Input::Timeout, now)` next (ms), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.stopped {
            return None;
        }
        let reconnect = match self.conn {
            Conn::Waiting { until } if self.in_flight.is_none() && !self.unreadable => Some(until),
            _ => None,
        };
        let flush = self.flush_at.filter(|_| self.may_flush());
        match (reconnect, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes one input at time `now` (ms).
    pub fn handle(&mut self, input: Input, now: u64) {
        if self.stopped {
            return;
        }
        match input {
            Input::Start { position } => {
                self.started = true;
                self.position = position;
                self.conn = Conn::Waiting { until: now };
            }
            Input::Stop => {
                self.close();
                self.stopped = true;
                self.started = false;
                self.conn = Conn::Idle;
                self.flush_at = None;
                self.outbox = 0;
                return;
            }
            Input::StreamOpened => {
                if self.conn == Conn::Opening {
                    self.conn = Conn::Open;
                    self.after_snapshot = false;
                    self.want_flush(now);
                }
            }
            Input::Event(event) => {
                if self.connected() {
                    self.received += 1;
                    self.queue.push_back(event);
                }
            }
            Input::Notice(StreamNotice::Reset { .. }) => {
                if self.connected() {
                    self.resync(now);
                }
            }
            Input::Notice(StreamNotice::CaughtUp { head, .. }) => {
                if self.connected() {
                    self.caught_up_after = Some(self.received);
                    if let Some(head) = Position::parse(&head) {
                        self.head = Some(head);
                    }
                }
            }
            Input::StreamFailed { status } => {
                if self.connected() {
                    self.close();
                    if status == Some(410) {
                        // Pruned past the position: nothing is skipped silently (X10).
                        self.snapshot_needed = true;
                        self.conn = Conn::Waiting { until: now };
                    } else {
                        self.failed(status, now);
                    }
                }
            }
            Input::SnapshotProgress { done, total } => {
                if self.conn == Conn::Snapshot {
                    self.snapshot_progress = Some((done, total));
                }
            }
            Input::SnapshotTaken { position } => {
                // The store holds it whatever happened meanwhile.
                self.position = Some(position.clone());
                self.head = Some(position);
                self.snapshot_needed = false;
                self.snapshot_progress = None;
                self.storage_problem = None;
                if self.conn == Conn::Snapshot {
                    self.conn = Conn::Waiting { until: now };
                    self.after_snapshot = true;
                }
            }
            Input::SnapshotFailed { status } => {
                if self.conn == Conn::Snapshot {
                    self.snapshot_progress = None;
                    if status == Some(404) {
                        self.no_snapshot = true;
                        self.snapshot_needed = false;
                        self.conn = Conn::Waiting { until: now };
                    } else {
                        self.failed(status, now);
                    }
                }
            }
            Input::Ingested { outcomes } => self.ingested(outcomes, now),
            Input::IngestFailed { code } => {
                self.in_flight = None;
                self.storage_problem = Some(code);
                if self.connected() {
                    self.close();
                    self.retry_later(now);
                } else if self.conn == Conn::Snapshot {
                    // A snapshot that could not be stored: again later, whole.
                    self.snapshot_progress = None;
                    self.retry_later(now);
                }
            }
            Input::SignedIn => {
                self.signed_out = false;
                self.fresh_session = true;
                if matches!(self.conn, Conn::SigningIn | Conn::Idle) && self.started() {
                    self.conn = Conn::Waiting { until: now };
                }
            }
            Input::SignInFailed => {
                if self.conn == Conn::SigningIn {
                    self.signed_out = true;
                    self.conn = Conn::Idle;
                }
            }
            Input::Online => {
                self.offline = false;
                if matches!(self.conn, Conn::Idle | Conn::Waiting { .. })
                    && self.started()
                    && !self.signed_out
                {
                    self.backoff.reset();
                    self.conn = Conn::Waiting { until: now };
                }
                self.want_flush(now);
            }
            Input::Offline => {
                self.offline = true;
                if self.connected() {
                    self.close();
                }
                if matches!(self.conn, Conn::Waiting { .. } | Conn::Opening | Conn::Open) {
                    self.conn = Conn::Idle;
                }
            }
            Input::OutboxWaiting { count } => {
                self.outbox = count;
                if count == 0 {
                    self.flush_at = None;
                } else if self.flush_at.is_none() && !self.flushing {
                    self.flush_at = Some(now + self.config.outbox_retry_ms);
                }
            }
            Input::Unreadable => {
                if self.connected() {
                    self.close();
                    self.unreadable = true;
                    self.conn = Conn::Idle;
                }
            }
            Input::Queued => {
                self.outbox += 1;
                self.want_flush(now);
            }
            Input::Flushed {
                remaining,
                not_before,
            } => {
                self.not_before = not_before.unwrap_or(0);
                self.flushing = false;
                self.outbox = remaining;
                self.flush_at = (remaining > 0).then(|| {
                    let next = if std::mem::take(&mut self.flush_again) {
                        now
                    } else {
                        now + self.config.outbox_retry_ms
                    };
                    next.max(not_before.unwrap_or(0))
                });
            }
            Input::Head(head) => self.head = Some(head),
            Input::Timeout => {}
        }
        self.drive(now);
    }

    fn started(&self) -> bool {
        self.started
    }

    fn connected(&self) -> bool {
        matches!(self.conn, Conn::Opening | Conn::Open)
    }

    fn may_flush(&self) -> bool {
        self.outbox > 0 && !self.flushing && !self.offline && !self.signed_out
    }

    /// Flush now (a reconnect, `online`), or right after the flush in flight.
    fn want_flush(&mut self, now: u64) {
        if self.outbox == 0 {
            return;
        }
        if self.flushing {
            self.flush_again = true;
        } else {
            let soon = now.max(self.not_before);
            self.flush_at = Some(self.flush_at.map_or(soon, |at| at.min(soon)));
        }
    }

    /// Closes the stream and drops what it delivered but was not handed to ingest
    /// (the next stream replays it from the position).
    fn close(&mut self) {
        if self.connected() {
            self.actions.push_back(Action::CloseStream);
        }
        self.queue.clear();
        self.caught_up_after = None;
        self.live = false;
        self.after_snapshot = false;
    }

    /// The stream or the snapshot failed with `status`: sign in again on a 401 (once),
    /// otherwise retry with backoff.
    fn failed(&mut self, status: Option<u16>, now: u64) {
        if status == Some(401) && self.fresh_session {
            // The sign-in just made gave no session: stop asking.
            self.signed_out = true;
            self.conn = Conn::Idle;
        } else if status == Some(401) {
            self.conn = Conn::SigningIn;
            self.actions.push_back(Action::SignIn);
        } else {
            self.retry_later(now);
        }
    }

    fn retry_later(&mut self, now: u64) {
        self.conn = Conn::Waiting {
            until: now + self.backoff.next_delay(),
        };
    }

    /// A new epoch (S4): close, forget the position, reopen from the start.
    fn resync(&mut self, now: u64) {
        self.close();
        self.reset_needed = true;
        self.conn = Conn::Waiting { until: now };
    }

    fn ingested(&mut self, outcomes: Vec<IngestOutcome>, now: u64) {
        let Some(run) = self.in_flight.take() else {
            return;
        };
        self.storage_problem = None;
        let (mut gap, mut resync) = (outcomes.len() < run.len(), false);
        for (at, outcome) in run.into_iter().zip(&outcomes) {
            if outcome.resync {
                resync = true;
                break;
            }
            if outcome.gap {
                gap = true;
                break;
            }
            // Applied, or a duplicate (the store is at or past it): either way the
            // store's position is at least this one.
            let ahead = self
                .position
                .as_ref()
                .is_some_and(|p| p.epoch == at.epoch && p.id >= at.id);
            if !ahead {
                self.position = Some(at);
            }
            self.ingested += 1;
        }
        if !self.connected() {
            return;
        }
        if resync {
            self.resync(now);
        } else if gap {
            self.close();
            self.conn = Conn::Waiting { until: now };
        }
    }

    /// Starts what can start now, then announces status and progress changes.
    fn drive(&mut self, now: u64) {
        if let Conn::Waiting { until } = self.conn {
            if now >= until
                && self.in_flight.is_none()
                && !self.offline
                && !self.signed_out
                && !self.unreadable
            {
                self.open();
            }
        }
        if self.in_flight.is_none() {
            if let Some((events, positions)) = next_run(&mut self.queue) {
                self.in_flight = Some(positions);
                self.actions.push_back(Action::Ingest { events });
            }
        }
        if self.conn == Conn::Open && !self.live {
            if let Some(after) = self.caught_up_after {
                if self.ingested >= after {
                    self.live = true;
                    self.fresh_session = false;
                    self.storage_problem = None;
                    self.backoff.reset();
                }
            }
        }
        if self.may_flush() && self.flush_at.is_some_and(|at| at <= now) {
            self.flushing = true;
            self.flush_at = None;
            self.actions.push_back(Action::FlushOutbox);
        }
        self.announce();
    }

    fn open(&mut self) {
        if std::mem::take(&mut self.reset_needed) {
            self.actions.push_back(Action::ResetPosition);
            self.position = None;
        }
        if (self.position.is_none() || self.snapshot_needed) && !self.no_snapshot {
            self.actions.push_back(Action::TakeSnapshot);
            self.conn = Conn::Snapshot;
            // Connecting until the relay's first line is in.
            self.snapshot_progress = None;
            self.live = false;
            return;
        }
        self.actions.push_back(Action::OpenStream {
            since: self.position.as_ref().map(Position::to_string),
        });
        self.conn = Conn::Opening;
        self.received = 0;
        self.ingested = 0;
        self.caught_up_after = None;
        self.live = false;
        self.start = self.position.clone();
        // A head learnt before (a hint, the last stream) counts only if still ahead.
        let behind = |h: &Position| match &self.start {
            Some(s) => h.epoch != s.epoch || h.id <= s.id,
            None => false,
        };
        if self.head.as_ref().is_some_and(behind) {
            self.head = None;
        }
    }

    fn current_status(&self) -> Option<Status> {
        if !self.started {
            return None;
        }
        Some(if self.unreadable {
            Status::UpdateRequired
        } else if self.signed_out {
            Status::SignedOut
        } else if self.offline {
            Status::Offline
        } else if let Some(code) = &self.storage_problem {
            Status::StorageProblem { code: code.clone() }
        } else {
            match self.conn {
                Conn::Idle => return None,
                Conn::Waiting { until } => Status::Reconnecting { retry_at: until },
                Conn::Opening if self.after_snapshot => Status::CatchingUp,
                Conn::Opening | Conn::SigningIn => Status::Connecting,
                Conn::Snapshot if self.snapshot_progress.is_some() => Status::CatchingUp,
                Conn::Snapshot => Status::Connecting,
                Conn::Open if self.live => Status::Live,
                Conn::Open => Status::CatchingUp,
            }
        })
    }

    /// Catch-up progress of the open stream, in log positions from where it started.
    fn current_progress(&self) -> Option<Progress> {
        if self.conn == Conn::Snapshot {
            let (done, total) = self.snapshot_progress?;
            return Some(Progress {
                phase: Phase::Snapshot,
                done,
                total: (total > 0).then_some(total),
            });
        }
        if self.conn != Conn::Open {
            return None;
        }
        let epoch = self.start.as_ref().map(|s| s.epoch.as_str());
        let from = self.start.as_ref().map_or(0, |s| s.id);
        let since = |p: &Position| (p.id - from).max(0) as u64;
        let total = self
            .head
            .as_ref()
            .filter(|h| epoch.is_none_or(|e| e == h.epoch))
            .map(since);
        let done = match (&self.position, total) {
            (_, Some(total)) if self.live => total,
            (Some(p), _) if epoch.is_none_or(|e| e == p.epoch) => since(p),
            _ => 0,
        };
        Some(Progress {
            phase: Phase::CatchUp,
            done: total.map_or(done, |t| done.min(t)),
            total,
        })
    }

    /// Status and progress, each only when changed; the last progress goes before
    /// `live`, the first after `catching_up`.
    fn announce(&mut self) {
        let status = self.current_status();
        let progress = self
            .current_progress()
            .filter(|p| Some(p) != self.progress.as_ref());
        let status = status.filter(|s| Some(s) != self.status.as_ref());
        let live = status == Some(Status::Live);
        if let (Some(p), true) = (&progress, live) {
            self.actions.push_back(Action::Progress(p.clone()));
        }
        if let Some(s) = status {
            self.status = Some(s.clone());
            self.actions.push_back(Action::Status(s));
        }
        if let Some(p) = progress {
            if !live {
                self.actions.push_back(Action::Progress(p.clone()));
            }
            self.progress = Some(p);
        }
    }
}
