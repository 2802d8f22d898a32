// The CRM page shell: relay connection, DOM rendering and input wiring only. Every
// decision (routing, visibility, templates, segments, the pane) lives in the WASM core.
// Untrusted text reaches the DOM only through textContent.
import init, { SmsClient } from "./pkg/sms_module.js";
import { known, rememberLanguage, translate } from "./i18n.js";

const $ = (id) => document.getElementById(id);
// Set while this browser holds a session (any tab): only then is `/me` asked at start.
const SIGNED_IN = "signed-in";
let lang = localStorage.getItem("lang") || "en";
const t = (key, params) => translate(lang, key, params);

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  document.title = t("doc_title");
  rememberLanguage(lang); // for the service worker's notifications
  renderStatus();
}

const time = (ms) => new Date(ms).toLocaleString(lang === "hi" ? "hi-IN" : "en-GB", { dateStyle: "short", timeStyle: "short" });
const statusNotes = new Set();
function setStatus(key, on) {
  on ? statusNotes.add(key) : statusNotes.delete(key);
  renderStatus();
}
/** The status line, in the current language (P1, P2: never a silent failure): the
 * connection's status, then any standing notes. */
function renderStatus() {
  const line = sync.status === "reconnecting" ? `${t("reconnecting")} ${time(sync.retry_at)}` : t(SYNC_NOTE[sync.status]);
  $("status").textContent = [line, ...[...statusNotes].map(t)].join(" · ");
}

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", headers: { "content-type": "application/json" }, ...options });
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  return { ok: r.ok, status: r.status, body };
}

let client, me, changes, connection, sync = { status: "connecting" };

// ---- the relay connection: the SDK owns it (stream, retries, epochs, outbox); the
// page only shows what it reports ----
const SYNC_NOTE = { connecting: "connecting", catching_up: "catching_up", live: "connected", reconnecting: "reconnecting",
  offline: "offline", storage_problem: "storage_full", signed_out: "signed_out", update_required: "update_required" };
function onSync(e) {
  if (e.type === "status") {
    sync = e;
    if (e.status === "live") $("sync-progress").hidden = true;
    if (e.status === "storage_problem") showError({ code: e.code });
    renderStatus();
  } else if (e.type === "progress") {
    const bar = $("sync-progress");
    bar.hidden = e.total != null && e.done >= e.total && e.phase === "directory";
    bar.setAttribute("aria-label", t(`progress_${e.phase}`));
    if (e.total) { bar.max = e.total; bar.value = e.done; } else bar.removeAttribute("value");
    if (e.phase === "directory" && e.done >= (e.total ?? 0)) fillPhone();
  } else {
    if (e.kind === "erased") closeGoneNotifications();
    refresh(); // a conversation changed, or a notification was raised
  }
}

/** An erased customer's system notifications go with their messages (F6): close those
 * whose conversation is no longer stored. */
async function closeGoneNotifications() {
  const registration = await navigator.serviceWorker?.getRegistration().catch(() => null);
  if (!registration) return;
  const ids = new Set((await client.inbox()).conversations.map((c) => c.id));
  for (const n of await registration.getNotifications()) {
    if (n.data?.conversation && !ids.has(n.data.conversation)) n.close();
  }
}

async function fillPhone() {
  const numbers = await client.orgNumbers();
  $("phone-to").replaceChildren(...numbers.map((o) => el("option", { value: o.number, text: o.number })));
}

// ---- rendering ----
let refreshing = null, dirty = false;
/** Coalesces refresh requests (own writes and other tabs' announcements): one render
 * at a time, and one more after it when anything changed meanwhile. While the module
 * catches up (a snapshot, a long replay) it renders at most twice a second, so the
 * page does not take the main thread from the work it shows. Resolves once what was
 * asked for is on screen. */
function refresh() {
  dirty = true;
  refreshing ??= (async () => {
    while (dirty) {
      dirty = false;
      await render().catch(console.warn);
      if (dirty && sync.status !== "live") await new Promise((r) => setTimeout(r, 500));
    }
    refreshing = null;
  })();
  return refreshing;
}

async function render() {
  // The grid and the bell from one read of the store.
  const { conversations, notifications } = await client.inbox();
  renderGrid(conversations);
  renderBell(notifications);
  await renderRoute();
  renderPane(client.paneView());
}

// ---- CRM views: the grid, records (O2), the work list (O4); hash routes ----
const views = ["messages", "records", "record", "upnext"];
async function renderRoute() {
  const [, name = "messages", ...rest] = location.hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  const current = views.includes(name) ? name : "messages";
  for (const v of views) $(`view-${v}`).hidden = v !== current;
  for (const a of document.querySelectorAll("nav.tabs a")) {
    const on = a.getAttribute("href") === `#/${current === "record" ? "records" : current}`;
    on ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current");
  }
  if (current === "records") await renderRecords();
  if (current === "record") await renderRecord(arg);
  if (current === "upnext") await renderUpNext();
}

const recordLink = (r) => el("a", { href: `#/record/${encodeURIComponent(r.id)}`, text: `${r.name} (${t(r.kind)})` });

async function renderRecords() {
  const found = await client.lookup($("records-query").value, 50);
  $("records-list").replaceChildren(...found.map((r) => el("li", {}, recordLink(r))));
}

const phoneFields = ["business_phone", "mobile_phone"];
/** A speech-bubble icon (inline SVG: no font needed, nothing for the CSP to block). */
function bubble() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("width", "18"); svg.setAttribute("height", "18"); svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}
async function renderRecord(id) {
  const r = await client.record(id);
  if (!r) { $("record-h").textContent = t("not_found"); $("record-phones").replaceChildren(); return; }
  $("record-h").textContent = r.name;
  // A record that is not the seller's comes by name only (X5): no owner to show.
  const owner = !r.owner ? "" : ` · ${t("owner")}: ${r.owner.seller ?? `${t("team")} ${r.owner.team}`}`;
  $("record-meta").textContent = `${t(r.kind)}${owner}${r.active ? "" : ` · ${t("inactive")}`}`;
  // O2: a message icon beside each phone field opens that number's conversation.
  $("record-phones").replaceChildren(...r.phones.flatMap((phone, i) => {
    const field = phoneFields[i] ?? "other_phone";
    return [el("dt", { text: t(field) }), el("dd", {}, el("span", { text: phone }), " ",
      el("button", { type: "button", class: "icon", "aria-label": `${t("text_number")} ${phone}`, title: `${t("text_number")} ${phone}`,
        onclick: () => openRecordPane(r.id, phone, { via: "record_phone", field }) }, bubble()))];
  }));
  if (!r.phones.length) $("record-phones").append(el("dd", { class: "muted", text: t("no_phone") }));
  const related = await client.related(r.id);
  $("related-h").hidden = $("record-related").hidden = related.length === 0;
  $("record-related").replaceChildren(...related.map((x) => el("li", {}, recordLink(x))));
  // The record's conversations (for a contact, its opportunities' too).
  const convs = await client.recordConversations(r.id);
  $("record-activities").replaceChildren(...(convs.length ? convs.map((c) => el("li", {},
    el("button", { type: "button", class: "link", onclick: () => openPane(c.id, { via: "grid" }) },
      bubble(), ` ${c.record_name} · ${c.customer_number} · ${c.preview} · ${time(c.last_ms)}`))) : [el("li", { class: "muted", text: t("no_conversations") })]));
}

let workList = null;
async function renderUpNext() {
  workList ??= (await api("/demo-crm.json")).body?.work_items ?? [];
  const mine = workList.filter((w) => w.seller === me.seller);
  const items = [];
  for (const w of mine) {
    const r = await client.record(w.record_id);
    if (!r) continue;
    items.push(el("li", { class: "step" }, el("span", { text: `${w.due} · ${w.title} · ${r.name} (${w.phone})` }), " ",
      el("button", { type: "button", text: t("open_text_step"), "aria-label": `${t("open_text_step")}: ${r.name}`,
        onclick: () => openRecordPane(w.record_id, w.phone, { via: "work_item", id: w.id }) })));
  }
  $("upnext-list").replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: t("nothing_up_next") })]));
}

/** The grid shows the most recent conversations; a seller with thousands finds older
 * ones through their record (the Records view). */
const GRID_ROWS = 300;
function renderGrid(all) {
  const rows = all.slice(0, GRID_ROWS);
  $("grid-more").hidden = all.length <= rows.length;
  $("grid-more").textContent = t("grid_more", { shown: rows.length, total: all.length });
  const body = $("grid").tBodies[0];
  // Live updates re-render the grid: keep keyboard focus on the same conversation.
  const focused = document.activeElement?.closest?.("#grid tbody tr")?.dataset.id;
  body.replaceChildren(...rows.map((c) => {
    const open = () => openPane(c.id, { via: "grid" });
    const tr = el("tr", { tabindex: "0", "data-id": c.id, ondblclick: open, onkeydown: (e) => e.key === "Enter" && open() },
      el("td", { text: c.record_name || c.record_id }),
      el("td", { text: c.customer_number }),
      el("td", {}, c.unread ? el("span", { class: "badge", text: String(c.unread), "aria-label": t("unread_badge", { n: c.unread }) }) : "", " ", el("span", { text: c.preview })),
      el("td", { text: time(c.last_ms) }));
    if (c.unread) tr.classList.add("unread");
    return tr;
  }));
  if (focused) [...body.rows].find((tr) => tr.dataset.id === focused)?.focus();
  $("grid-empty").hidden = rows.length > 0;
}

function renderBell(notes) {
  const unread = notes.filter((n) => n.unread).length;
  $("unread").textContent = String(unread);
  $("bell").setAttribute("aria-label", `${t("notifications")}: ${unread}`);
  $("bell-list").replaceChildren(...notes.slice(0, 20).map((n) => el("li", {},
    el("button", { type: "button", class: n.unread ? "unread" : "", onclick: () => { toggleBell(false); openPane(n.conversation_id, { via: "notification", id: n.id }); } },
      el("strong", { text: n.kind === "missing_privilege" ? t("missing_privilege") : t("new_message") }), " ",
      el("span", { text: n.text }), " ", el("small", { text: time(n.at_ms) })))));
}

function toggleBell(open = $("bell-panel").hidden) {
  $("bell-panel").hidden = !open;
  $("bell").setAttribute("aria-expanded", String(open));
}

async function openPane(id, via) {
  return showPane(() => client.openConversation(id, via));
}

async function openRecordPane(recordId, phone, via) {
  return showPane(() => client.openRecord(recordId, phone, via));
}

async function showPane(open) {
  try {
    const view = await open();
    await loadTemplates(view);
    $("composer").value = view.composer.text;
    renderPane(view);
    $("pane").hidden = false;
    $("messages").scrollTop = $("messages").scrollHeight;
    $("composer").focus();
    client.putSetting("pane", { record: view.record.id, customer: view.conversation.customer_number }).catch(console.warn);
    await refresh();
  } catch (e) {
    showError(e);
  }
}

async function loadTemplates(view) {
  const templates = await client.templates(view.record.kind, lang);
  $("template").replaceChildren(el("option", { value: "", text: t("no_template") }),
    ...templates.map((tp) => el("option", { value: tp.body, text: `${tp.name} (${languageName(tp.language)})` })));
}

/** A template's language in the page's language: the catalogue's word, else the browser's. */
function languageName(code) {
  if (known(`lang_${code}`)) return t(`lang_${code}`);
  try { return new Intl.DisplayNames([lang], { type: "language" }).of(code) ?? code; } catch { return code; }
}

/** Errors from the module carry a stable code; say them in words, never silently. */
function showError(e) {
  const text = errorText(e);
  $("page-error").textContent = text;
  setTimeout(() => { if ($("page-error").textContent === text) $("page-error").textContent = ""; }, 8000);
}

/** A record's name for the audit trail (its id until the store answers). */
const names = new Map();
function recordName(id) {
  if (!names.has(id)) {
    names.set(id, id);
    client.record(id).then((r) => { if (r) { names.set(id, r.name); renderPane(client.paneView()); } }, console.warn);
  }
  return names.get(id);
}

function renderPane(view) {
  if (!view) { $("pane").hidden = true; return; }
  $("pane-record").textContent = `${view.record.name} (${t(view.record.kind)})`;
  $("pane-related-label").hidden = view.related.length === 0;
  $("pane-related").replaceChildren(el("option", { value: "", text: `${view.record.name} (${t(view.record.kind)})` }),
    ...view.related.map((r) => el("option", { value: r.id, text: `${r.name} (${t(r.kind)})` })));
  $("pane-route").textContent = routeText(view.route);
  $("pane-moves").replaceChildren(...view.moves.map((m) => el("li", { text: `${t("moved")}: ${recordName(m.from_record)} → ${recordName(m.to_record)} (${m.by}, ${time(Date.parse(m.at))})` })));
  $("pane-consent").textContent = t(view.consent);
  $("pane-consent").className = `badge ${view.consent}`;
  const options = (sel, list, current) => sel.replaceChildren(...list.map((n) => el("option", { value: n, text: n, ...(n === current ? { selected: "" } : {}) })));
  options($("pane-from"), view.from_choices, view.conversation.org_number);
  options($("pane-to"), view.to_choices, view.conversation.customer_number);
  $("load-older").hidden = !view.has_more;
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  const atBottom = fromBottom - list.clientHeight < 40;
  list.replaceChildren(...view.messages.map(messageItem));
  // Keep the reader's place when older pages arrive above; follow new messages at the bottom.
  list.scrollTop = atBottom ? list.scrollHeight : list.scrollHeight - fromBottom;
  const c = view.composer;
  $("preview").textContent = c.preview !== c.text ? c.preview : "";
  const s = c.segments;
  $("counter").textContent = `${s.encoding} · ${s.units} ${t("units")} · ${s.segments} ${t("segments")} · ${s.remaining} ${t("left")}`
    + (s.ucs2_chars.length ? ` · ${t("ucs2_because")} ${s.ucs2_chars.slice(0, 8).join(" ")}${s.ucs2_chars.length > 8 ? " …" : ""}` : "") + (s.too_long ? ` · ${t("too_long")}` : "")
    + (c.limit_left != null && c.limit_left >= 0 ? ` · ${c.limit_left} ${t("limit_left")}` : "");
  const syntax = c.template_error && `${t("template_error", { offset: c.template_error.offset + 1 })} ${t(`template_${c.template_error.code}`)}`;
  $("missing").textContent = c.missing.length ? `${t("missing")}: ${c.missing.join(", ")}` : (syntax || "");
  $("send").disabled = Boolean(c.blocked && c.blocked !== "missing_fields");
  // Why Send is disabled, in words (the empty composer needs no explanation).
  const why = c.blocked && !["missing_fields", "empty_message", "template_syntax", "too_long"].includes(c.blocked) ? t(`blocked_${c.blocked}`) : "";
  $("send-blocked").textContent = why;
  $("send").title = why;
  $("move-status").textContent = view.pending_move ? `… ${view.pending_move.name}`
    : view.move_error ? t(known(`move_error_${view.move_error}`) ? `move_error_${view.move_error}` : "move_error_move_refused") : "";
}

/** Why the conversation is on its record (B1): the move that brought it here, else the rule. */
function routeText(route) {
  if (!route) return "";
  if (route.code === "moved_here") return t("route_moved_here", { by: route.by, from: recordName(route.from_record), at: time(Date.parse(route.at)) });
  const unknown = (route.code === "addressed_seller" && !route.seller) || (route.code === "team_member" && !route.team);
  const reason = t(`route_${route.code}${unknown ? "_unknown" : ""}`, { ...route, kind: route.kind && t(route.kind) });
  return `${t("routed_by")} ${reason}`;
}

/** A failed send in words (B5): what went wrong, the fix, the number to use instead. */
function failureText(f) {
  const code = f.error_code != null ? `${f.reason} (${f.error_code})` : f.reason;
  return `${code}: ${t(`failure_${f.code}`)} ${t(`fix_${f.fix}`)}` + (f.suggested_number ? ` ${t("suggested_number", { number: f.suggested_number })}` : "");
}

/** An error from the module in words: its code's entry in the catalogue, never its English message. */
function errorText(e) {
  for (const key of [`error_${e?.code}`, `blocked_${e?.code}`]) if (known(key)) return t(key);
  console.warn(e);
  return t("error_other");
}

function messageItem(m) {
  const li = el("li", { class: m.direction },
    el("span", { class: "who", text: t(m.direction) }), " ",
    el("time", { datetime: m.at, text: time(Date.parse(m.at)) }),
    el("p", { text: m.body }));
  // B8: media as links; images of this origin also as thumbnails (the page's policy
  // loads nothing from other origins).
  for (const media of m.media ?? []) {
    const major = media.content_type.split("/")[0];
    const link = el("a", { href: media.url, rel: "noopener noreferrer", target: "_blank", text: `${t("attachment")}: ${t(known(`media_${major}`) ? `media_${major}` : "media_file")}` });
    const local = new URL(media.url, location.href).origin === location.origin;
    if (media.content_type.startsWith("image/") && local) link.prepend(el("img", { src: media.url, alt: "", class: "thumb" }));
    li.append(link);
  }
  if (m.direction === "outbound") {
    const state = m.delivery ? t(`delivery_${m.delivery.status}`) : (m.local ? t(m.local) : "");
    const report = el("p", { class: "report", text: m.local === "queued_offline" ? t("queued_offline") : state });
    if (m.failure) {
      const why = failureText(m.failure);
      report.classList.add("failed");
      report.title = why;
      report.tabIndex = 0;
      report.append(el("span", { class: "why", text: ` — ${m.failure.reason}` }), el("span", { class: "tooltip", role: "tooltip", text: why }));
      report.addEventListener("mouseenter", () => placeTooltip(report));
      report.addEventListener("focus", () => placeTooltip(report));
    }
    li.append(report);
  }
  return li;
}

/** Places a failure's tooltip over the page (position: fixed), below its report or above
 * when the window has no room below, so the scrolling message list never cuts it off. */
function placeTooltip(report) {
  const tip = report.querySelector(".tooltip");
  const at = report.getBoundingClientRect();
  tip.style.left = `${Math.max(4, Math.min(at.left, innerWidth - tip.offsetWidth - 4))}px`;
  tip.style.top = `${at.bottom + 2}px`;
  if (at.bottom + 2 + tip.offsetHeight > innerHeight) tip.style.top = `${Math.max(4, at.top - tip.offsetHeight - 2)}px`;
}

async function dispatch(input) {
  try {
    renderPane(await client.dispatch(input));
    $("send-error").textContent = "";
  } catch (e) {
    $("send-error").textContent = errorText(e);
  }
}

// ---- start ----
async function start(profile) {
  me = profile;
  try {
    client = await SmsClient.open({ dbName: `sms-${me.seller}`, seller: me.seller, defaultRegion: me.default_region ?? undefined });
  } catch (e) {
    setStatus("offline_db", true);
    throw e;
  }
  $("signin").hidden = true;
  $("layout").hidden = false; $("bell").hidden = false; $("signout").hidden = false;
  fillPhone();
  // Keep the subscription referenced: a collected one stops listening.
  changes = client.subscribe((change) => {
    // Another tab (or the service worker) changed the store: the open pane re-reads
    // its latest page when the change is about its conversation.
    if (change?.conversation_id && client.paneView()) client.syncPane(change.conversation_id).then(renderPane, console.warn);
    if (change?.kind === "erased") closeGoneNotifications();
    refresh();
  });
  setStatus("storage_refused", (await SmsClient.persist()) === "denied");
  setStatus("notif_blocked", "Notification" in self && Notification.permission === "denied");
  await refresh();
  connection = await client.connect({});
  connection.subscribe(onSync);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  setUpPush().catch(console.warn);
  if ("Notification" in self && Notification.permission === "default") {
    $("notify-btn").hidden = false;
    $("notify-btn").addEventListener("click", async () => {
      const answer = await Notification.requestPermission();
      $("notify-btn").hidden = true;
      setStatus("notif_blocked", answer === "denied");
      setUpPush().catch(console.warn);
    });
  }
  const wanted = new URLSearchParams(location.search).get("conversation");
  if (wanted) openPane(wanted, { via: "notification", id: wanted });
  else {
    // After a reload, the pane comes back where the seller left it.
    const last = await client.setting("pane");
    if (last?.record) openRecordPane(last.record, last.customer, { via: "grid" });
  }
  setInterval(renderPhone, 2000);
  setInterval(renderCrm, 2000);
}

// ---- service worker and Web Push (N2) ----
async function setUpPush() {
  if (!("serviceWorker" in navigator)) return;
  const registration = await navigator.serviceWorker.register("/sw.js", { type: "module" });
  navigator.serviceWorker.addEventListener("message", (e) => {
    if (e.data?.type === "changed") { if (client.paneView()) client.syncPane().then(renderPane, console.warn); refresh(); }
    if (e.data?.type === "open_conversation" && e.data.conversation) openPane(e.data.conversation, { via: "notification", id: e.data.conversation });
  });
  if (!("PushManager" in self) || Notification.permission !== "granted") return;
  try {
    const sub = (await registration.pushManager.getSubscription())
      ?? (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: me.vapid_public_key }));
    await api("/push/subscriptions", { method: "POST", body: JSON.stringify(sub.toJSON()) });
  } catch (e) {
    console.warn("push subscription unavailable", e);
  }
}

async function renderPhone() {
  const number = $("phone-from").value.replace(/[^\d+]/g, "");
  // Offline, the poll fails: the panel keeps what it showed (no uncaught rejection).
  const r = await api(`/demo/phone/messages?number=${encodeURIComponent(number)}`).catch(() => null);
  if (r?.ok) $("phone-inbox").replaceChildren(...r.body.slice(-10).map((m) => el("li", { text: `${m.from}: ${m.body}` })));
}

/** The demo CRM's inbox: the signed webhooks the relay sent it (F1), newest first. */
async function renderCrm() {
  const r = await api("/demo/crm/received").catch(() => null);
  if (!r?.ok) return;
  $("crm-inbox").replaceChildren(...r.body.slice(-8).reverse().map((w) => el("li", {
    text: `${time(Date.parse(w.at))} · ${t(`crm_kind_${w.kind}`)} · #${w.event_id} · ${t(w.verified ? "crm_verified" : "crm_unverified")}`,
  })));
}

async function main() {
  applyLanguage();
  $("lang").value = lang;
  $("lang").addEventListener("change", () => {
    lang = $("lang").value; localStorage.setItem("lang", lang); applyLanguage();
    if (!client) return;
    refresh();
    const view = client.paneView();
    if (view) loadTemplates(view).catch(console.warn);
  });
  await init();
  const sellers = await api("/demo/sellers");
  $("seller").replaceChildren(...(sellers.body ?? []).map((s) => el("option", { value: s.token, text: `${s.name} (${s.id})` })));
  $("signin-btn").addEventListener("click", async () => {
    const r = await api("/session", { method: "POST", body: JSON.stringify({ token: $("seller").value }) });
    if (!r.ok) { $("signin-error").textContent = t("signin_failed"); return; }
    localStorage.setItem(SIGNED_IN, "1");
    start((await api("/me")).body);
  });
  $("signout").addEventListener("click", async () => {
    try { await client.signOut(false); }
    catch (e) { if (e.code !== "outbox_not_empty" || !confirm(t("confirm_discard"))) return; await client.signOut(true); }
    await api("/session", { method: "DELETE" });
    localStorage.removeItem(SIGNED_IN);
    location.reload();
  });
  $("bell").addEventListener("click", () => toggleBell());
  // Escape closes the notification centre and gives focus back to the bell.
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("bell-panel").hidden) { toggleBell(false); $("bell").focus(); }
  });
  // C3/B6: when no template fits, the composer's text becomes one, for this record
  // kind and the page's language (placeholders are checked when it is saved).
  $("template-save").addEventListener("click", async () => {
    const view = client.paneView();
    const name = $("template-name").value.trim();
    if (!view || !name || !$("composer").value.trim()) { $("template-status").textContent = t("template_needs"); return; }
    try {
      await client.putTemplate({ id: `tpl:${me.seller}:${Date.now()}`, name, category: view.record.kind, language: lang, body: $("composer").value });
      $("template-status").textContent = `${t("template_saved")}: ${name}`;
      $("template-name").value = "";
      await loadTemplates(view);
    } catch (e) {
      $("template-status").textContent = errorText(e);
    }
  });
  $("pane-export").addEventListener("click", async () => {
    try {
      const data = await client.exportConversation();
      const file = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const a = el("a", { href: URL.createObjectURL(file), download: `conversation-${data.conversation.customer_number}-${data.conversation.record_id.replace(/[^\w-]+/g, "_")}.json` });
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) { showError(e); }
  });
  $("pane-close").addEventListener("click", () => {
    dispatch({ type: "close" }); $("pane").hidden = true;
    client.putSetting("pane", null).catch(console.warn);
  });
  $("composer").addEventListener("input", () => dispatch({ type: "composer_edited", text: $("composer").value }));
  $("template").addEventListener("change", () => { if ($("template").value) { $("composer").value = $("template").value; dispatch({ type: "template_chosen", body: $("template").value }); } });
  $("send").addEventListener("click", async () => {
    const confirm_missing = $("missing").textContent !== "" && confirm($("missing").textContent);
    await dispatch({ type: "send", client_ref: crypto.randomUUID(), confirm_missing });
    $("composer").value = client.paneView()?.composer.text ?? "";
    refresh();
  });
  $("pane-from").addEventListener("change", () => dispatch({ type: "from_chosen", number: $("pane-from").value }));
  $("pane-to").addEventListener("change", () => dispatch({ type: "to_chosen", number: $("pane-to").value }));
  $("load-older").addEventListener("click", () => dispatch({ type: "load_older" }));
  // A failure's tooltip follows its report while the list scrolls.
  $("messages").addEventListener("scroll", () => {
    const open = document.querySelector(".report.failed:hover, .report.failed:focus");
    if (open) placeTooltip(open);
  });
  let loadingOlder = false;
  $("messages").addEventListener("scroll", async () => {
    if (loadingOlder || $("messages").scrollTop > 60 || !client.paneView()?.has_more) return;
    loadingOlder = true;
    try { await dispatch({ type: "load_older" }); } finally { loadingOlder = false; }
  });
  $("pane-related").addEventListener("change", () => {
    const id = $("pane-related").value;
    if (id) dispatch({ type: "related_chosen", record_id: id }).then(() => { const v = client.paneView(); if (v) loadTemplates(v); });
  });
  $("pane-record").addEventListener("click", () => { const v = client.paneView(); if (v) location.hash = `#/record/${encodeURIComponent(v.record.id)}`; });
  $("records-query").addEventListener("input", () => renderRecords());
  window.addEventListener("hashchange", () => { if (client) renderRoute(); });
  $("move-query").addEventListener("input", async () => {
    const q = $("move-query").value;
    const found = q.length < 2 ? [] : await client.lookup(q, 8);
    $("move-results").replaceChildren(...found.map((r) => el("li", {}, el("button", { type: "button", text: `${r.name} (${t(r.kind)})`,
      onclick: () => { $("move-results").replaceChildren(); $("move-query").value = ""; dispatch({ type: "move_requested", target: { id: r.id, kind: r.kind, name: r.name, owner: r.owner } }); } }))));
  });
  $("phone-send").addEventListener("click", async () => {
    await api("/demo/phone/send", { method: "POST", body: JSON.stringify({ from: $("phone-from").value, to: $("phone-to").value, body: $("phone-body").value }) });
  });
  // Ask for the session only when this browser signed in before (another tab counts):
  // a first visit shows the sign-in form without a failed request.
  if (localStorage.getItem(SIGNED_IN)) {
    const current = await api("/me");
    if (current.ok) start(current.body);
    else localStorage.removeItem(SIGNED_IN);
  }
}

main();
