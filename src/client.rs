//! `SmsClient`: the stateful JS API over the IndexedDB store (browser runtime).
//! Works in a page and in a service worker (it never touches `window`).

use serde::Deserialize;
use sms_core::protocol::{Directory, LoggedEvent};
use wasm_bindgen::prelude::*;

use crate::js_error::{js_error, JsResult};
use crate::store::{IdbStore, SellerContext, StoreError};
use crate::to_js;

#[wasm_bindgen(typescript_custom_section)]
const TS_CLIENT: &'static str = r#"
/** Options of `SmsClient.open`. */
export interface SmsClientOptions { dbName: string; seller: string; defaultRegion?: string }
/** What `ingest` did with one relay event. */
export interface IngestOutcome {
  duplicate: boolean; resync: boolean; kind: string;
  record_id: string | null; rule: RouteRule | null; created_lead: string | null;
  conversation_id: string | null; notification: Notification | null;
}
/** An in-app notification (N1) or the missing-privilege notice (P3). */
export interface Notification {
  id: string; kind: "new_message" | "missing_privilege"; conversation_id: string;
  text: string; at_ms: number; unread: 0 | 1;
}
/** A conversation in "My text messages". */
export interface ConversationSummary {
  id: string; record_id: string; record_name: string; org_number: string; customer_number: string;
  last_ms: number; preview: string; unread: number; rule: RouteRule | null;
  moves: { by: string; at: string; from_record: string; to_record: string }[];
  consent: "opted_in" | "opted_out";
}
/** A stored message. */
export interface StoredMessage {
  id: string; conversation_id: string; at_ms: number; direction: "inbound" | "outbound"; body: string;
  provider_id?: string; client_ref: string | null;
  delivery: { status: string; error_code: number | null } | null;
  media: { url: string; content_type: string }[];
}
/** A page of history, oldest to newest. */
export interface HistoryPage { messages: StoredMessage[]; has_more: boolean }
"#;

fn store_error(e: StoreError) -> JsValue {
    js_error(e.code, &e.message, &[])
}

fn input<T: for<'de> Deserialize<'de>>(value: JsValue) -> JsResult<T> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| js_error("invalid_input", &e.to_string(), &[]))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    db_name: String,
    seller: String,
    #[serde(default)]
    default_region: Option<String>,
}

/// The browser runtime: relay events in, queries out, all in IndexedDB.
#[wasm_bindgen]
pub struct SmsClient {
    store: IdbStore,
}

#[wasm_bindgen]
impl SmsClient {
    /// Opens (creating or upgrading) the seller's database.
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "SmsClientOptions")] options: JsValue,
    ) -> JsResult<SmsClient> {
        let o: Options = input(options)?;
        let ctx = SellerContext {
            seller: o.seller,
            default_region: o.default_region,
        };
        let store = IdbStore::open(&o.db_name, ctx).await.map_err(store_error)?;
        Ok(Self { store })
    }

    /// Applies one relay event (in log order) in one transaction.
    #[wasm_bindgen(unchecked_return_type = "IngestOutcome")]
    pub async fn ingest(
        &self,
        #[wasm_bindgen(unchecked_param_type = "object")] event: JsValue,
    ) -> JsResult<JsValue> {
        let event: LoggedEvent = input(event)?;
        let outcome = self.store.ingest(&event).await.map_err(store_error)?;
        to_js(&outcome)
    }

    /// Imports a directory snapshot from the relay (`GET /directory`), in batches.
    #[wasm_bindgen(js_name = importDirectory)]
    pub async fn import_directory(
        &self,
        #[wasm_bindgen(unchecked_param_type = "object")] directory: JsValue,
    ) -> JsResult<u32> {
        let directory: Directory = input(directory)?;
        let n = self
            .store
            .import_directory(&directory, 2000)
            .await
            .map_err(store_error)?;
        Ok(n as u32)
    }

    /// "My text messages": visible conversations, newest first.
    #[wasm_bindgen(unchecked_return_type = "ConversationSummary[]")]
    pub async fn conversations(&self) -> JsResult<JsValue> {
        to_js(&self.store.conversations().await.map_err(store_error)?)
    }

    /// The newest `limit` messages older than `beforeMs`, oldest to newest.
    #[wasm_bindgen(unchecked_return_type = "HistoryPage")]
    pub async fn history(
        &self,
        conversation_id: String,
        before_ms: Option<f64>,
        limit: Option<u32>,
    ) -> JsResult<JsValue> {
        let limit = limit.unwrap_or(50).clamp(1, 500) as usize;
        to_js(
            &self
                .store
                .history(&conversation_id, before_ms, limit)
                .await
                .map_err(store_error)?,
        )
    }

    /// Notifications, newest first.
    #[wasm_bindgen(unchecked_return_type = "Notification[]")]
    pub async fn notifications(&self) -> JsResult<JsValue> {
        to_js(&self.store.notifications().await.map_err(store_error)?)
    }

    /// Records whose name, id or phone matches `query` (move dialog, M1).
    #[wasm_bindgen(unchecked_return_type = "object[]")]
    pub async fn lookup(&self, query: String, limit: Option<u32>) -> JsResult<JsValue> {
        let limit = limit.unwrap_or(20).clamp(1, 200) as usize;
        to_js(
            &self
                .store
                .lookup(&query, limit)
                .await
                .map_err(store_error)?,
        )
    }

    /// Where to resume the relay stream: `<epoch>:<id>`, or `undefined` when fresh.
    pub async fn position(&self) -> JsResult<Option<String>> {
        self.store.position().await.map_err(store_error)
    }

    /// Forgets the relay position (after a `reset` event: a new epoch).
    #[wasm_bindgen(js_name = resetPosition)]
    pub async fn reset_position(&self) -> JsResult<()> {
        self.store.reset_position().await.map_err(store_error)
    }

    /// Closes the database connection.
    pub fn close(self) {
        self.store.close();
    }
}
