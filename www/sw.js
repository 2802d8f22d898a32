// Service worker (N2): a push is a doorbell ("events since id N are waiting"). The
// worker has the SDK fetch the waiting events over the authenticated channel and store
// them (IndexedDB, runs of events per transaction), and shows a system
// notification; a click focuses or opens the page on that conversation (O3).
import init, { SmsClient } from "./pkg/sms_module.js";
import { rememberedLanguage, translate } from "./i18n.js";

let ready;
const wasm = () => (ready ??= init());

/** Applies what the relay holds for this browser (the SDK's catch-up); the newest
 * notification it raised, if any. `head` is the doorbell's `<epoch>:<id>`. */
async function catchUp(head) {
  await wasm();
  const me = await fetch("/me", { credentials: "same-origin" });
  if (!me.ok) return null;
  const profile = await me.json();
  const client = await SmsClient.open({ dbName: `sms-${profile.seller}`, seller: profile.seller, defaultRegion: profile.default_region ?? undefined });
  try {
    const { notification, erased } = await client.catchUp({ head });
    // An erased customer's notifications go with their messages (F6).
    for (const n of await self.registration.getNotifications()) {
      if (erased.includes(n.data?.conversation)) n.close();
    }
    return notification;
  } finally {
    client.close();
  }
}

self.addEventListener("push", (event) => {
  event.waitUntil((async () => {
    let newest = null;
    let doorbell = null;
    try { doorbell = event.data?.json(); } catch { /* not JSON: no head, no progress total */ }
    const head = doorbell?.epoch != null && doorbell?.head != null ? `${doorbell.epoch}:${doorbell.head}` : undefined;
    try { newest = await catchUp(head); } catch (e) { console.error("push catch-up failed", e); }
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
