// Service worker (N2): a push is a doorbell ("events since id N are waiting"). The
// worker fetches the waiting events over the authenticated channel, stores them through
// the same WASM client (IndexedDB, one transaction per event), and shows a system
// notification; a click focuses or opens the page on that conversation (O3).
import init, { SmsClient } from "./pkg/sms_module.js";
import { rememberedLanguage, translate } from "./i18n.js";

let ready;
const wasm = () => (ready ??= init());

async function catchUp() {
  await wasm();
  const me = await fetch("/me", { credentials: "same-origin" });
  if (!me.ok) return null;
  const profile = await me.json();
  const client = await SmsClient.open({ dbName: `sms-${profile.seller}`, seller: profile.seller, defaultRegion: profile.default_region ?? undefined });
  let newest = null;
  try {
    let since = (await client.position()) ?? "0";
    for (let more = true; more;) {
      const r = await fetch(`/events/page?since=${encodeURIComponent(since)}&limit=200`, { credentials: "same-origin" });
      if (!r.ok) break;
      const page = await r.json();
      if (page.reset) await client.resetPosition();
      const outcomes = await client.ingestMany(page.events);
      for (const outcome of outcomes) if (outcome.notification) newest = outcome.notification;
      if (outcomes.some((o) => o.gap || o.resync)) break;
      since = page.next;
      more = page.more;
    }
  } finally {
    client.close();
  }
  return newest;
}

self.addEventListener("push", (event) => {
  event.waitUntil((async () => {
    let newest = null;
    try { newest = await catchUp(); } catch (e) { console.error("push catch-up failed", e); }
    // Open pages re-read the database now (they may have lost their own stream).
    for (const page of await self.clients.matchAll({ type: "window", includeUncontrolled: true })) {
      page.postMessage({ type: "changed" });
    }
    // Chrome requires every push to show a notification, in the language the page chose (E5).
    const lang = await rememberedLanguage();
    const title = translate(lang, newest?.kind === "missing_privilege" ? "notif_title_privilege" : "notif_title_new");
    await self.registration.showNotification(title, {
      lang,
      body: newest?.text ?? translate(lang, "notif_body_default"),
      tag: newest?.conversation_id ?? "sms",
      data: { conversation: newest?.conversation_id ?? null },
    });
  })());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const conversation = event.notification.data?.conversation;
  const url = conversation ? `/?conversation=${encodeURIComponent(conversation)}` : "/";
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const w of windows) {
      if (new URL(w.url).origin === self.location.origin) {
        w.postMessage({ type: "open_conversation", conversation });
        return w.focus();
      }
    }
    return self.clients.openWindow(url);
  })());
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
