//! The relay: the callback URL configured at the SMS provider, the browsers'
//! source of pushed events, the path of outbound sends, and the one sequencer of
//! shared state (leads, moves, consent, directory). It runs the same pure core as
//! the browser (`sms-core`) natively.
//!
//! Layout: `provider` (callbacks in, sends out) → `sequencer` (the single writer:
//! decisions over `state`, durable `store`) → `sse` / `push` (events out). `app` wires
//! the HTTP routes; `demo` is the simulated provider for the demo and tests.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod config;
pub mod crm_webhook;
pub mod demo;
pub mod erasure;
pub mod error;
pub mod feed;
pub mod jwt;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod proxy;
pub mod push;
pub mod push_guard;
pub mod sends;
pub mod sequencer;
pub mod signature;
pub mod snapshot;
pub mod sse;
pub mod store;
