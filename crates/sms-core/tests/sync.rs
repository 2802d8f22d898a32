//! The sync machine and the worker's catch-up, scripted with a fake clock: every
//! reconnect, ingest, caught-up, progress, online/offline and outbox path, and each
//! send verdict.

use sms_core::consent::Consent;
use sms_core::protocol::events::{ConsentChangedEvent, DirectoryChangedEvent};
use sms_core::protocol::{
    DirectoryPatch, ErrorBody, EventBody, EventsPage, LoggedEvent, SendAnswer, SendOutcome,
};
use sms_core::store::run::MAX_RUN;
use sms_core::store::IngestOutcome;
use sms_core::sync::{
    send_verdict, Action, CatchUp, CatchUpAction, CatchUpEnd, CatchUpInput, Config, Input, Phase,
    Position, Progress, RetryCause, Status, StreamNotice, SyncMachine, Verdict,
};
use sms_core::Timestamp;

const T0: u64 = 1_714_557_600_000;

fn at(epoch: &str, id: i64) -> Position {
    Position {
        epoch: epoch.into(),
        id,
    }
}

fn event_in(epoch: &str, id: i64) -> LoggedEvent {
    LoggedEvent {
        epoch: epoch.into(),
        id,
        body: EventBody::ConsentChanged(ConsentChangedEvent {
            org_number: "+14155550100".into(),
            customer_number: "+919812345678".into(),
            consent: Consent::OptedIn,
            at: Timestamp::from_millis(0),
        }),
    }
}

fn event(id: i64) -> LoggedEvent {
    event_in("e1", id)
}

fn directory_event(id: i64) -> LoggedEvent {
    LoggedEvent {
        epoch: "e1".into(),
        id,
        body: EventBody::DirectoryChanged(DirectoryChangedEvent {
            patch: DirectoryPatch::default(),
        }),
    }
}

fn applied(n: usize) -> Vec<IngestOutcome> {
    vec![IngestOutcome::default(); n]
}

fn caught_up(head: i64) -> Input {
    Input::Notice(StreamNotice::CaughtUp {
        epoch: "e1".into(),
        head: format!("e1:{head}"),
    })
}

struct Harness {
    sync: SyncMachine,
    now: u64,
}

impl Harness {
    fn new(seed: u64) -> Self {
        Self {
            sync: SyncMachine::new(Config {
                seed,
                ..Config::default()
            }),
            now: T0,
        }
    }

    fn step(&mut self, input: Input) -> Vec<Action> {
        self.sync.handle(input, self.now);
        std::iter::from_fn(|| self.sync.poll()).collect()
    }

    /// Moves the clock to the next wake-up and fires it.
    fn wake(&mut self) -> Vec<Action> {
        self.now = self.sync.poll_timeout().expect("a timer");
        self.step(Input::Timeout)
    }

    /// Started from `position` with the stream open. With no position, against a
    /// relay without snapshots (404): the log is replayed from its start, as the
    /// stream tests below expect.
    fn connected(position: Option<Position>) -> Self {
        let mut h = Self::new(7);
        let fresh = position.is_none();
        h.step(Input::Start { position });
        if fresh {
            h.step(Input::SnapshotFailed { status: Some(404) });
        }
        h.step(Input::StreamOpened);
        h
    }

    fn events(&mut self, ids: std::ops::Range<i64>) -> Vec<Action> {
        ids.flat_map(|id| self.step(Input::Event(event(id))))
            .collect()
    }
}

fn opens(actions: &[Action]) -> Vec<Option<String>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::OpenStream { since } => Some(since.clone()),
            _ => None,
        })
        .collect()
}

fn ingests(actions: &[Action]) -> Vec<Vec<i64>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Ingest { events } => Some(events.iter().map(|e| e.id).collect()),
            _ => None,
        })
        .collect()
}

fn statuses(actions: &[Action]) -> Vec<Status> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Status(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

// ---- start, runs, order ----

#[test]
fn starts_from_the_stored_position() {
    let mut h = Harness::new(1);
    let actions = h.step(Input::Start {
        position: Some(at("e1", 5)),
    });
    assert_eq!(
        actions,
        [
            Action::OpenStream {
                since: Some("e1:5".into())
            },
            Action::Status(Status::Connecting)
        ]
    );
    // A device with nothing stored starts from the relay's snapshot (E3).
    let fresh = Harness::new(1).step(Input::Start { position: None });
    assert_eq!(fresh[0], Action::TakeSnapshot);
    assert!(opens(&fresh).is_empty());
    assert_eq!(statuses(&h.step(Input::StreamOpened)), [Status::CatchingUp]);
}

#[test]
fn events_go_to_ingest_in_runs_one_at_a_time_in_order() {
    let mut h = Harness::connected(None);
    let n = 2 * MAX_RUN as i64 + 50;
    // The first event goes at once; the rest wait for it and go in full runs.
    let first = h.events(1..n + 1);
    assert_eq!(ingests(&first), [vec![1]]);
    let second = h.step(Input::Ingested {
        outcomes: applied(1),
    });
    assert_eq!(
        ingests(&second),
        [(2..=MAX_RUN as i64 + 1).collect::<Vec<_>>()]
    );
    // Events that arrive meanwhile queue behind.
    assert!(ingests(&h.step(Input::Event(event(n + 1)))).is_empty());
    let third = h.step(Input::Ingested {
        outcomes: applied(MAX_RUN),
    });
    assert_eq!(
        ingests(&third),
        [(MAX_RUN as i64 + 2..=2 * MAX_RUN as i64 + 1).collect::<Vec<_>>()]
    );
    let fourth = h.step(Input::Ingested {
        outcomes: applied(MAX_RUN),
    });
    assert_eq!(
        ingests(&fourth),
        [(2 * MAX_RUN as i64 + 2..=n + 1).collect::<Vec<_>>()]
    );
    h.step(Input::Ingested {
        outcomes: applied(50),
    });
    assert_eq!(h.sync.position(), Some(&at("e1", n + 1)));
}

#[test]
fn a_directory_event_is_ingested_alone() {
    let mut h = Harness::connected(None);
    let mut actions = h.step(Input::Event(event(1)));
    actions.extend(h.step(Input::Event(event(2))));
    actions.extend(h.step(Input::Event(directory_event(3))));
    actions.extend(h.step(Input::Event(event(4))));
    actions.extend(h.step(Input::Ingested {
        outcomes: applied(1),
    }));
    actions.extend(h.step(Input::Ingested {
        outcomes: applied(1),
    }));
    actions.extend(h.step(Input::Ingested {
        outcomes: applied(1),
    }));
    assert_eq!(ingests(&actions), [vec![1], vec![2], vec![3], vec![4]]);

    let mut h = Harness::connected(None);
    for e in [event(1), event(2), directory_event(3), event(4)] {
        h.sync.handle(Input::Event(e), h.now);
    }
    // Queued together: 1 went at once; then [2], [3] alone, [4].
    let mut runs = ingests(&std::iter::from_fn(|| h.sync.poll()).collect::<Vec<_>>());
    for n in [1, 1, 1] {
        runs.extend(ingests(&h.step(Input::Ingested {
            outcomes: applied(n),
        })));
    }
    assert_eq!(runs, [vec![1], vec![2], vec![3], vec![4]]);
}

// ---- duplicates, gaps, resync ----

#[test]
fn duplicates_are_harmless() {
    let mut h = Harness::connected(Some(at("e1", 3)));
    h.events(2..5); // runs [2], [3, 4]
    let duplicate = IngestOutcome {
        duplicate: true,
        ..Default::default()
    };
    let mut actions = h.step(Input::Ingested {
        outcomes: vec![duplicate.clone()],
    });
    assert_eq!(h.sync.position(), Some(&at("e1", 3)), "not moved back");
    actions.extend(h.step(Input::Ingested {
        outcomes: vec![duplicate, IngestOutcome::default()],
    }));
    assert!(!actions.contains(&Action::CloseStream), "{actions:?}");
    assert_eq!(h.sync.position(), Some(&at("e1", 4)));
}

#[test]
fn a_gap_closes_and_reopens_from_the_last_applied_position() {
    let mut h = Harness::connected(Some(at("e1", 3)));
    h.events(4..7); // runs [4], [5, 6]
    let gap = IngestOutcome {
        gap: true,
        ..Default::default()
    };
    h.step(Input::Ingested {
        outcomes: applied(1),
    });
    let actions = h.step(Input::Ingested {
        outcomes: vec![gap.clone(), gap],
    });
    assert_eq!(actions[0], Action::CloseStream);
    assert_eq!(opens(&actions), [Some("e1:4".into())]);
    assert!(!actions.contains(&Action::ResetPosition));
    // The new stream replays from there.
    h.step(Input::StreamOpened);
    assert_eq!(ingests(&h.step(Input::Event(event(5)))), [vec![5]]);
}

#[test]
fn a_resync_outcome_forgets_the_position_and_replays_the_new_epoch() {
    let mut h = Harness::connected(Some(at("e1", 3)));
    h.step(Input::Event(event_in("e2", 1)));
    let actions = h.step(Input::Ingested {
        outcomes: vec![IngestOutcome {
            resync: true,
            ..Default::default()
        }],
    });
    assert_eq!(
        actions[..3],
        [
            Action::CloseStream,
            Action::ResetPosition,
            Action::TakeSnapshot
        ]
    );
    assert_eq!(h.sync.position(), None);
}

#[test]
fn a_reset_notice_waits_for_the_run_in_flight_then_resets() {
    let mut h = Harness::connected(Some(at("e1", 3)));
    h.events(4..6);
    let actions = h.step(Input::Notice(StreamNotice::Reset { epoch: "e2".into() }));
    assert_eq!(actions[0], Action::CloseStream);
    assert!(opens(&actions).is_empty() && !actions.contains(&Action::ResetPosition));
    // The run still applies (its position is the old epoch's); then the reset.
    let actions = h.step(Input::Ingested {
        outcomes: applied(1),
    });
    assert_eq!(actions[..2], [Action::ResetPosition, Action::TakeSnapshot]);
}

// ---- ingest failure ----

#[test]
fn a_failed_ingest_reports_storage_and_retries_from_the_last_applied_position() {
    let mut h = Harness::connected(Some(at("e1", 3)));
    h.events(4..6);
    h.step(Input::Ingested {
        outcomes: applied(1),
    }); // 4 applied, [5] in flight
    h.events(6..8); // queued behind
    let actions = h.step(Input::IngestFailed {
        code: "quota_exceeded".into(),
    });
    assert_eq!(actions[0], Action::CloseStream);
    assert_eq!(
        statuses(&actions),
        [Status::StorageProblem {
            code: "quota_exceeded".into()
        }]
    );
    let retry = h.sync.poll_timeout().unwrap();
    assert!((h.now + 1_000..=h.now + 3_000).contains(&retry));
    // Nothing queued from the closed stream goes to ingest.
    assert!(ingests(&h.step(Input::Timeout)).is_empty());
    let actions = h.wake();
    assert_eq!(opens(&actions), [Some("e1:4".into())]);
    // The problem shows until the replay applies.
    assert!(statuses(&h.step(Input::StreamOpened)).is_empty());
    h.events(5..8);
    let actions = h.step(caught_up(7));
    assert!(statuses(&actions).is_empty());
    let actions = h.step(Input::Ingested {
        outcomes: applied(1),
    });
    assert_eq!(statuses(&actions), [Status::CatchingUp]);
    h.step(Input::Ingested {
        outcomes: applied(2),
    });
    assert_eq!(h.sync.status(), Some(&Status::Live));
    assert_eq!(h.sync.position(), Some(&at("e1", 7)));
}

// ---- reconnect and backoff ----

/// Delays between failures of streams that open and fail at once.
fn failure_delays(seed: u64, n: usize) -> Vec<u64> {
    let mut h = Harness::new(seed);
    h.step(Input::Start {
        position: Some(at("e1", 1)),
    });
    (0..n)
        .map(|_| {
            h.step(Input::StreamFailed { status: None });
            let wait = h.sync.poll_timeout().unwrap() - h.now;
            assert_eq!(opens(&h.wake()).len(), 1);
            wait
        })
        .collect()
}

#[test]
fn backoff_grows_with_jitter_up_to_the_cap() {
    let mut longest = 0;
    for seed in 0..200 {
        let delays = failure_delays(seed, 8);
        let mut ceiling = 1_000;
        for d in &delays {
            ceiling = (ceiling * 3).min(30_000);
            assert!((1_000..=ceiling).contains(d), "seed {seed}: {delays:?}");
            ceiling = (*d).max(1_000);
            longest = longest.max(*d);
        }
    }
    assert!(longest > 20_000, "never grew: {longest}");
    assert_eq!(longest.min(30_000), longest);
    assert_ne!(failure_delays(1, 8), failure_delays(2, 8), "no jitter");
}

#[test]
fn backoff_resets_once_a_connection_was_live() {
    let mut grown = 0;
    for seed in 0..50 {
        let mut h = Harness::new(seed);
        h.step(Input::Start {
            position: Some(at("e1", 1)),
        });
        for _ in 0..6 {
            h.step(Input::StreamFailed { status: Some(503) });
            h.wake();
        }
        // Open but not live yet: no reset.
        h.step(Input::StreamOpened);
        h.step(Input::StreamFailed { status: None });
        if h.sync.poll_timeout().unwrap() - h.now > 3_000 {
            grown += 1;
        }
        h.wake();
        h.step(Input::StreamOpened);
        h.step(caught_up(0));
        h.step(Input::StreamFailed { status: None });
        let wait = h.sync.poll_timeout().unwrap() - h.now;
        assert!((1_000..=3_000).contains(&wait), "seed {seed}: {wait}");
    }
    assert!(grown > 25, "only {grown} of 50 had grown before the reset");
}

#[test]
fn no_content_unavailable_and_network_errors_reconnect_with_a_status() {
    for status in [Some(204), Some(503), Some(500), None] {
        let mut h = Harness::connected(Some(at("e1", 9)));
        let actions = h.step(Input::StreamFailed { status });
        let retry_at = h.sync.poll_timeout().unwrap();
        assert_eq!(
            actions,
            [
                Action::CloseStream,
                Action::Status(Status::Reconnecting { retry_at })
            ],
            "{status:?}"
        );
        // Not before the time.
        h.now = retry_at - 1;
        assert!(opens(&h.step(Input::Timeout)).is_empty());
        h.now = retry_at;
        let actions = h.step(Input::Timeout);
        assert_eq!(opens(&actions), [Some("e1:9".into())]);
        assert_eq!(statuses(&actions), [Status::Connecting]);
    }
}

#[test]
fn unauthorized_asks_to_sign_in_then_reconnects_or_is_signed_out() {
    let mut h = Harness::connected(None);
    let actions = h.step(Input::StreamFailed { status: Some(401) });
    assert_eq!(actions[..2], [Action::CloseStream, Action::SignIn]);
    assert_eq!(h.sync.poll_timeout(), None);
    let actions = h.step(Input::SignedIn);
    assert_eq!(opens(&actions), [None]);

    let mut h = Harness::connected(None);
    h.step(Input::StreamFailed { status: Some(401) });
    let actions = h.step(Input::SignInFailed);
    assert_eq!(statuses(&actions), [Status::SignedOut]);
    assert_eq!(h.sync.poll_timeout(), None);
    assert!(opens(&h.step(Input::Online)).is_empty());
    // A later sign-in (the page's own) resumes.
    assert_eq!(opens(&h.step(Input::SignedIn)), [None]);
}

// ---- caught up, progress ----

#[test]
fn live_only_after_the_replay_before_caught_up_is_applied() {
    let mut h = Harness::new(1);
    let mut all = h.step(Input::Start {
        position: Some(at("e1", 10)),
    });
    all.extend(h.step(Input::StreamOpened));
    all.extend(h.events(11..14));
    all.extend(h.step(caught_up(15)));
    // A live event after the notice does not hold "live" back.
    all.extend(h.step(Input::Event(event(16))));
    assert_eq!(h.sync.status(), Some(&Status::CatchingUp));
    all.extend(h.step(Input::Ingested {
        outcomes: applied(1),
    }));
    assert_eq!(h.sync.status(), Some(&Status::CatchingUp));
    // [12, 13, 16]: the replay's end and a live event, in one run.
    all.extend(h.step(Input::Ingested {
        outcomes: applied(3),
    }));
    assert_eq!(h.sync.status(), Some(&Status::Live));
    assert_eq!(
        statuses(&all),
        [Status::Connecting, Status::CatchingUp, Status::Live]
    );
    // Live stays live while later events apply.
    h.step(Input::Event(event(17)));
    assert!(statuses(&h.step(Input::Ingested {
        outcomes: applied(1)
    }))
    .is_empty());
}

#[test]
fn caught_up_with_nothing_to_replay_is_live_at_once() {
    let mut h = Harness::connected(Some(at("e1", 4)));
    let actions = h.step(caught_up(4));
    assert_eq!(
        actions,
        [
            Action::Progress(Progress {
                phase: Phase::CatchUp,
                done: 0,
                total: Some(0)
            }),
            Action::Status(Status::Live)
        ]
    );
}

fn progress_of(actions: &[Action]) -> Vec<(u64, Option<u64>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Progress(p) => Some((p.done, p.total)),
            _ => None,
        })
        .collect()
}

#[test]
fn progress_counts_up_to_the_head_and_ends_before_live() {
    let mut h = Harness::new(1);
    // The head learnt from `GET /directory` gives the total from the start.
    h.step(Input::Head(at("e1", 30)));
    let mut all = h.step(Input::Start {
        position: Some(at("e1", 10)),
    });
    all.extend(h.step(Input::StreamOpened));
    for id in [12, 15, 18, 24] {
        all.extend(h.step(Input::Event(event(id))));
    }
    all.extend(h.step(caught_up(30)));
    for n in [1, 3] {
        all.extend(h.step(Input::Ingested {
            outcomes: applied(n),
        }));
    }
    assert_eq!(
        progress_of(&all),
        [(0, Some(20)), (2, Some(20)), (20, Some(20))]
    );
    // Order: catching_up, then the progress, the last one right before live.
    let kinds: Vec<&str> = all
        .iter()
        .filter_map(|a| match a {
            Action::Status(Status::CatchingUp) => Some("catching_up"),
            Action::Status(Status::Live) => Some("live"),
            Action::Progress(_) => Some("progress"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["catching_up", "progress", "progress", "progress", "live"]
    );
}

#[test]
fn progress_is_indeterminate_until_the_head_is_known() {
    let mut h = Harness::connected(Some(at("e1", 0)));
    h.events(1..3);
    let actions = h.step(Input::Ingested {
        outcomes: applied(1),
    });
    assert_eq!(progress_of(&actions), [(1, None)]);
    // The notice gives the total at once; the end comes with the last event.
    let mut actions = h.step(caught_up(4));
    actions.extend(h.step(Input::Ingested {
        outcomes: applied(1),
    }));
    assert_eq!(progress_of(&actions), [(1, Some(4)), (4, Some(4))]);
    assert_eq!(h.sync.status(), Some(&Status::Live));
}

// ---- online / offline ----

#[test]
fn offline_closes_and_waits_online_reconnects_at_once() {
    let mut h = Harness::connected(Some(at("e1", 2)));
    for _ in 0..4 {
        h.step(Input::StreamFailed { status: None });
        h.wake();
    }
    let actions = h.step(Input::Offline);
    assert_eq!(statuses(&actions), [Status::Offline]);
    assert_eq!(opens(&actions), []);
    assert_eq!(h.sync.poll_timeout(), None);
    h.now += 60_000;
    let actions = h.step(Input::Online);
    assert_eq!(opens(&actions), [Some("e1:2".into())]);
    assert_eq!(statuses(&actions), [Status::Connecting]);
    // Backoff starts over after `online`.
    h.step(Input::StreamFailed { status: None });
    assert!(h.sync.poll_timeout().unwrap() - h.now <= 3_000);

    // Offline while open closes the stream.
    let mut h = Harness::connected(None);
    assert_eq!(h.step(Input::Offline)[0], Action::CloseStream);
    // Offline before start: nothing opens until online.
    let mut h = Harness::new(1);
    h.step(Input::Offline);
    let actions = h.step(Input::Start { position: None });
    assert_eq!(
        (opens(&actions), statuses(&actions)),
        (vec![], vec![Status::Offline])
    );
    assert_eq!(h.step(Input::Online)[0], Action::TakeSnapshot);
}

#[test]
fn stop_closes_and_leaves_no_timer() {
    let mut h = Harness::connected(None);
    h.step(Input::OutboxWaiting { count: 2 });
    assert_eq!(h.step(Input::Stop), [Action::CloseStream]);
    assert_eq!(h.sync.poll_timeout(), None);
    assert!(h.step(Input::Online).is_empty());
}

// ---- outbox ----

fn flushes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| **a == Action::FlushOutbox)
        .count()
}

#[test]
fn the_outbox_flushes_on_a_timer_while_anything_waits() {
    let mut h = Harness::connected(None);
    h.step(caught_up(0));
    assert_eq!(flushes(&h.step(Input::OutboxWaiting { count: 2 })), 0);
    assert_eq!(h.sync.poll_timeout(), Some(h.now + 10_000));
    assert_eq!(flushes(&h.wake()), 1);
    assert_eq!(h.sync.poll_timeout(), None, "one flush at a time");
    h.now += 500;
    assert_eq!(
        flushes(&h.step(Input::Flushed {
            remaining: 1,
            not_before: None
        })),
        0
    );
    assert_eq!(h.sync.poll_timeout(), Some(h.now + 10_000));
    assert_eq!(flushes(&h.wake()), 1);
    h.step(Input::Flushed {
        remaining: 0,
        not_before: None,
    });
    assert_eq!(h.sync.poll_timeout(), None, "nothing waits");
}

#[test]
fn the_outbox_flushes_on_reconnect_and_online_one_at_a_time() {
    let mut h = Harness::new(1);
    h.step(Input::OutboxWaiting { count: 1 });
    h.step(Input::Start {
        position: Some(at("e1", 1)),
    });
    assert_eq!(flushes(&h.step(Input::StreamOpened)), 1, "on connect");
    // `online` during the flush: no second flush in flight...
    assert_eq!(flushes(&h.step(Input::Online)), 0);
    // ...but one right after it, if anything still waits.
    assert_eq!(
        flushes(&h.step(Input::Flushed {
            remaining: 1,
            not_before: None
        })),
        1
    );
    h.step(Input::Flushed {
        remaining: 1,
        not_before: None,
    });
    // A reconnect flushes again.
    h.step(Input::StreamFailed { status: None });
    h.wake();
    assert_eq!(flushes(&h.step(Input::StreamOpened)), 1);
    h.step(Input::Flushed {
        remaining: 1,
        not_before: None,
    });
    // Offline: no flush; `online` flushes at once.
    h.step(Input::Offline);
    h.now += 20_000;
    assert_eq!(flushes(&h.step(Input::Timeout)), 0);
    assert_eq!(flushes(&h.step(Input::Online)), 1);
}

#[test]
fn a_rate_limited_flush_waits_for_retry_after() {
    let mut h = Harness::connected(None);
    h.step(Input::OutboxWaiting { count: 1 });
    h.wake();
    let not_before = h.now + 60_000;
    h.step(Input::Flushed {
        remaining: 1,
        not_before: Some(not_before),
    });
    assert_eq!(h.sync.poll_timeout(), Some(not_before));
    h.now = not_before - 1;
    assert_eq!(flushes(&h.step(Input::Timeout)), 0);
    h.now = not_before;
    assert_eq!(flushes(&h.step(Input::Timeout)), 1);
}

#[test]
fn a_send_just_queued_goes_out_at_once_but_not_before_retry_after() {
    let mut h = Harness::connected(None);
    assert_eq!(flushes(&h.step(Input::Queued)), 1);
    let not_before = h.now + 30_000;
    h.step(Input::Flushed {
        remaining: 1,
        not_before: Some(not_before),
    });
    assert_eq!(flushes(&h.step(Input::Queued)), 0, "the relay said wait");
    assert_eq!(
        flushes(&h.step(Input::Online)),
        0,
        "online does not override it"
    );
    h.now = not_before;
    assert_eq!(flushes(&h.step(Input::Timeout)), 1);
}

// ---- send verdicts ----

fn answer(outcome: SendOutcome) -> SendAnswer {
    SendAnswer {
        client_ref: "c1".into(),
        outcome,
        message_sid: None,
        error_code: None,
        reason: None,
        provider_error: None,
        duplicate: false,
    }
}

fn error(code: &str) -> ErrorBody {
    ErrorBody {
        code: code.into(),
        message: String::new(),
        reason: None,
        error_code: None,
        retry_after: None,
    }
}

#[test]
fn send_answers_settle_retry_or_fail() {
    let now = T0;
    let retry = |cause| Verdict::Retry {
        not_before: None,
        cause,
    };
    for (status, outcome) in [
        (201, SendOutcome::Accepted),
        (202, SendOutcome::Unknown),
        (422, SendOutcome::Failed),
    ] {
        let a = answer(outcome);
        assert_eq!(
            send_verdict(Some(status), Some(&a), None, None, now),
            Verdict::Settle { answer: a }
        );
    }
    assert_eq!(
        send_verdict(
            Some(202),
            Some(&answer(SendOutcome::Pending)),
            None,
            None,
            now
        ),
        retry(RetryCause::Pending)
    );
    let limited = error("send_rate_limited");
    assert_eq!(
        send_verdict(Some(429), None, Some(&limited), Some(30), now),
        Verdict::Retry {
            not_before: Some(now + 30_000),
            cause: RetryCause::RateLimited
        }
    );
    let capped = ErrorBody {
        retry_after: Some(3_600),
        ..error("daily_send_cap")
    };
    assert_eq!(
        send_verdict(Some(429), None, Some(&capped), None, now),
        Verdict::Retry {
            not_before: Some(now + 3_600_000),
            cause: RetryCause::RateLimited
        }
    );
    let unauthorized = error("unauthorized");
    assert_eq!(
        send_verdict(Some(401), None, Some(&unauthorized), None, now),
        retry(RetryCause::SignedOut)
    );
    assert_eq!(
        send_verdict(Some(409), None, None, None, now),
        retry(RetryCause::Conflict)
    );
    for status in [Some(500), Some(502), Some(503), Some(408), None] {
        assert_eq!(
            send_verdict(status, None, Some(&error("internal")), None, now),
            retry(RetryCause::Unavailable),
            "{status:?}"
        );
    }
    // Refusals fail with their code (and the provider-style reason when there is one).
    let opted_out = ErrorBody {
        reason: Some("RecipientUnsubscribed".into()),
        error_code: Some(21610),
        ..error("opted_out")
    };
    assert_eq!(
        send_verdict(Some(422), None, Some(&opted_out), None, now),
        Verdict::Fail {
            code: "opted_out".into(),
            reason: Some("RecipientUnsubscribed".into()),
            error_code: Some(21610)
        }
    );
    // A refusal without a provider code gets the one it corresponds to, so the failed
    // message explains itself like a provider failure (B5); others stay without.
    for (status, code, provider) in [
        (403, "not_your_number", Some(21606)),
        (404, "no_such_record", None),
        (400, "invalid_client_ref", None),
        (422, "destination_not_allowed", Some(21408)),
    ] {
        assert_eq!(
            send_verdict(Some(status), None, Some(&error(code)), None, now),
            Verdict::Fail {
                code: code.into(),
                reason: None,
                error_code: provider
            }
        );
    }
    assert_eq!(
        send_verdict(Some(413), None, None, None, now),
        Verdict::Fail {
            code: "http_413".into(),
            reason: None,
            error_code: None
        }
    );
    // A 4xx page without the relay's error body (a proxy's, a firewall's): keep it.
    assert_eq!(
        send_verdict(Some(404), None, None, None, now),
        retry(RetryCause::Unavailable)
    );
    // A 200 without an outcome says nothing: keep it.
    assert_eq!(
        send_verdict(Some(200), None, None, None, now),
        retry(RetryCause::Unavailable)
    );
}

// ---- the worker's catch-up ----

fn page(events: Vec<LoggedEvent>, more: bool, reset: bool) -> CatchUpInput {
    let next = events.last().map_or(0, |e| e.id);
    CatchUpInput::Page(EventsPage {
        epoch: "e1".into(),
        reset,
        events,
        next: format!("e1:{next}"),
        more,
    })
}

fn drain(c: &mut CatchUp) -> Vec<CatchUpAction> {
    std::iter::from_fn(|| c.poll()).collect()
}

#[test]
fn the_worker_follows_more_and_stops() {
    let mut c = CatchUp::new(Some(at("e1", 2)), Some(at("e1", 6)), 2);
    assert_eq!(
        drain(&mut c),
        [CatchUpAction::FetchPage {
            since: "e1:2".into(),
            limit: 2
        }]
    );
    c.handle(page(vec![event(3), event(4)], true, false));
    let a = drain(&mut c);
    assert!(matches!(&a[..], [CatchUpAction::Ingest { events }] if events.len() == 2));
    c.handle(CatchUpInput::Ingested {
        outcomes: applied(2),
    });
    assert_eq!(
        drain(&mut c),
        [
            CatchUpAction::Progress(Progress {
                phase: Phase::CatchUp,
                done: 2,
                total: Some(4)
            }),
            CatchUpAction::FetchPage {
                since: "e1:4".into(),
                limit: 2
            }
        ]
    );
    c.handle(page(vec![event(5)], false, false));
    drain(&mut c);
    c.handle(CatchUpInput::Ingested {
        outcomes: applied(1),
    });
    let a = drain(&mut c);
    assert_eq!(
        a.last(),
        Some(&CatchUpAction::Done(CatchUpEnd::CaughtUp)),
        "{a:?}"
    );
    assert!(a.contains(&CatchUpAction::Progress(Progress {
        phase: Phase::CatchUp,
        done: 4,
        total: Some(4)
    })));
    assert!(c.is_finished());
}

#[test]
fn the_worker_resets_on_a_new_epoch_and_stops_on_trouble() {
    let mut c = CatchUp::new(Some(at("e0", 9)), None, 200);
    drain(&mut c);
    c.handle(page(vec![event(1)], false, true));
    let a = drain(&mut c);
    assert_eq!(a[0], CatchUpAction::ResetPosition);
    assert!(matches!(a[1], CatchUpAction::Ingest { .. }));

    let mut c = CatchUp::new(None, None, 200);
    assert_eq!(
        drain(&mut c),
        [CatchUpAction::FetchPage {
            since: "0".into(),
            limit: 200
        }]
    );
    c.handle(page(vec![event(1), event(2)], true, false));
    drain(&mut c);
    c.handle(CatchUpInput::Ingested {
        outcomes: vec![
            IngestOutcome::default(),
            IngestOutcome {
                gap: true,
                ..Default::default()
            },
        ],
    });
    assert_eq!(
        drain(&mut c),
        [CatchUpAction::Done(CatchUpEnd::Interrupted)]
    );

    for (status, end) in [
        (Some(401), CatchUpEnd::SignedOut),
        (Some(503), CatchUpEnd::Unavailable { status: Some(503) }),
        (None, CatchUpEnd::Unavailable { status: None }),
    ] {
        let mut c = CatchUp::new(None, None, 200);
        drain(&mut c);
        c.handle(CatchUpInput::FetchFailed { status });
        assert_eq!(drain(&mut c), [CatchUpAction::Done(end)]);
    }
    let mut c = CatchUp::new(None, None, 200);
    drain(&mut c);
    c.handle(page(vec![event(1)], true, false));
    drain(&mut c);
    c.handle(CatchUpInput::IngestFailed {
        code: "write_refused".into(),
    });
    assert_eq!(
        drain(&mut c),
        [CatchUpAction::Done(CatchUpEnd::StorageProblem {
            code: "write_refused".into()
        })]
    );
    // Finished: nothing more comes out.
    c.handle(page(vec![event(2)], false, false));
    assert!(drain(&mut c).is_empty());
}

// ---- what crosses to JS ----

#[test]
fn statuses_and_progress_serialise_with_stable_codes() {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }
    assert_eq!(json(&Status::CatchingUp), r#"{"status":"catching_up"}"#);
    assert_eq!(
        json(&Status::Reconnecting { retry_at: 5 }),
        r#"{"status":"reconnecting","retry_at":5}"#
    );
    assert_eq!(
        json(&Status::StorageProblem {
            code: "quota_exceeded".into()
        }),
        r#"{"status":"storage_problem","code":"quota_exceeded"}"#
    );
    assert_eq!(json(&Status::SignedOut), r#"{"status":"signed_out"}"#);
    assert_eq!(
        json(&Progress {
            phase: Phase::CatchUp,
            done: 1,
            total: None
        }),
        r#"{"phase":"catch_up","done":1,"total":null}"#
    );
    assert_eq!(
        json(&StreamNotice::CaughtUp {
            epoch: "e1".into(),
            head: "e1:4".into()
        }),
        r#"{"kind":"caught_up","epoch":"e1","head":"e1:4"}"#
    );
    // A notice is not a logged event: it never reads as one.
    let notice = r#"{"kind":"caught_up","epoch":"e1","head":"e1:4","id":4}"#;
    assert!(serde_json::from_str::<LoggedEvent>(notice).is_err());
}

#[test]
fn stop_is_final_whatever_comes_after() {
    let mut h = Harness::connected(None);
    h.step(Input::OutboxWaiting { count: 1 });
    h.step(Input::Stop);
    // A start still on its way (a slow directory import), a flush that ends late.
    assert!(h.step(Input::Start { position: None }).is_empty());
    assert!(h
        .step(Input::Flushed {
            remaining: 1,
            not_before: None
        })
        .is_empty());
    assert_eq!(h.sync.poll_timeout(), None, "no timer revives it");
    assert!(h.step(Input::Online).is_empty());
}

#[test]
fn a_sign_in_that_gives_no_session_is_not_asked_again_in_a_loop() {
    let mut h = Harness::connected(None);
    let asked = |a: &[Action]| a.iter().filter(|x| **x == Action::SignIn).count();
    assert_eq!(asked(&h.step(Input::StreamFailed { status: Some(401) })), 1);
    assert_eq!(opens(&h.step(Input::SignedIn)).len(), 1, "reopens at once");
    h.step(Input::StreamOpened);
    let actions = h.step(Input::StreamFailed { status: Some(401) });
    assert_eq!(asked(&actions), 0, "the fresh session was refused: stop");
    assert!(statuses(&actions).contains(&Status::SignedOut));
}

#[test]
fn an_unreadable_stream_says_an_update_is_needed_and_does_not_loop() {
    let mut h = Harness::connected(None);
    let actions = h.step(Input::Unreadable);
    assert!(actions.contains(&Action::CloseStream));
    assert!(statuses(&actions).contains(&Status::UpdateRequired));
    assert_eq!(
        h.sync.poll_timeout(),
        None,
        "no reconnect: it would read the same event"
    );
    assert!(opens(&h.step(Input::Online)).is_empty());
}

// ---- snapshots (E3, X10) ----

fn snapshot_progress(actions: &[Action]) -> Vec<(u64, Option<u64>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Progress(p) if p.phase == Phase::Snapshot => Some((p.done, p.total)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_device_takes_the_snapshot_then_streams_from_its_position() {
    let mut h = Harness::new(3);
    let actions = h.step(Input::Start { position: None });
    assert_eq!(actions[0], Action::TakeSnapshot);
    // Connecting until the snapshot's first line; then catching up, without a flicker
    // back to connecting while its stream opens.
    assert_eq!(statuses(&actions), [Status::Connecting]);
    assert!(snapshot_progress(&actions).is_empty());
    let actions = h.step(Input::SnapshotProgress {
        done: 0,
        total: 1_000,
    });
    assert_eq!(statuses(&actions), [Status::CatchingUp]);
    let actions = h.step(Input::SnapshotProgress {
        done: 200,
        total: 1_000,
    });
    assert_eq!(snapshot_progress(&actions), [(200, Some(1_000))]);
    let actions = h.step(Input::SnapshotTaken {
        position: at("e1", 40),
    });
    assert_eq!(opens(&actions), [Some("e1:40".into())]);
    assert!(
        statuses(&actions).is_empty(),
        "still catching up: {actions:?}"
    );
    assert_eq!(h.sync.position(), Some(&at("e1", 40)));
    assert!(statuses(&h.step(Input::StreamOpened)).is_empty());
    h.step(Input::Event(event(41)));
    h.step(caught_up(41));
    let actions = h.step(Input::Ingested {
        outcomes: applied(1),
    });
    assert_eq!(statuses(&actions), [Status::Live]);
}

#[test]
fn a_pruned_position_takes_a_snapshot_at_once_and_nothing_is_skipped() {
    let mut h = Harness::connected(Some(at("e1", 3)));
    let actions = h.step(Input::StreamFailed { status: Some(410) });
    assert_eq!(actions[0], Action::CloseStream);
    assert_eq!(actions[1], Action::TakeSnapshot, "no backoff, no stream");
    assert_eq!(
        h.sync.position(),
        Some(&at("e1", 3)),
        "kept until the snapshot is stored"
    );
    let actions = h.step(Input::SnapshotTaken {
        position: at("e1", 90),
    });
    assert_eq!(opens(&actions), [Some("e1:90".into())]);
}

#[test]
fn a_failed_snapshot_is_retried_with_backoff_signs_in_or_falls_back_to_the_log() {
    // Cut (no `end` line) or a network error: again, after a delay.
    let mut h = Harness::new(5);
    h.step(Input::Start { position: None });
    let actions = h.step(Input::SnapshotFailed { status: None });
    assert!(matches!(
        statuses(&actions)[..],
        [Status::Reconnecting { .. }]
    ));
    assert!(h.sync.poll_timeout().unwrap() > h.now);
    assert_eq!(h.wake()[0], Action::TakeSnapshot);
    // Progress reported for the failed attempt is not carried over.
    assert!(
        snapshot_progress(&h.step(Input::SnapshotProgress { done: 1, total: 0 }))
            .iter()
            .all(|(_, total)| total.is_none())
    );

    // 401: sign in, then take it again.
    let actions = h.step(Input::SnapshotFailed { status: Some(401) });
    assert_eq!(actions[0], Action::SignIn);
    assert_eq!(h.step(Input::SignedIn)[0], Action::TakeSnapshot);

    // A relay without snapshots (404): the log from its start, as before.
    let actions = h.step(Input::SnapshotFailed { status: Some(404) });
    assert_eq!(opens(&actions), [None]);
    h.step(Input::StreamOpened);
    // ...and a new epoch later replays the log too (no second 404 to learn it).
    h.step(Input::Event(event_in("e2", 1)));
    let actions = h.step(Input::Ingested {
        outcomes: vec![IngestOutcome {
            resync: true,
            ..Default::default()
        }],
    });
    assert_eq!(opens(&actions), [None]);
}

#[test]
fn a_snapshot_stored_while_offline_still_counts() {
    let mut h = Harness::new(6);
    h.step(Input::Start { position: None });
    h.step(Input::Offline);
    h.step(Input::SnapshotTaken {
        position: at("e1", 12),
    });
    assert_eq!(h.sync.position(), Some(&at("e1", 12)));
    assert_eq!(opens(&h.step(Input::Online)), [Some("e1:12".into())]);
}
