// The smallest CRM page on the SDK alone: sign in (the CRM's business), open the
// seller's store, connect, render what the connection reports. No fetch of the relay's
// event, message or move endpoints, no EventSource, no retry logic here.
import init, { SmsClient } from "@acme/sms-module";

const $ = (id) => document.getElementById(id);
const seller = new URLSearchParams(location.search).get("seller") ?? "asha";

/** A session for the seller. A real CRM posts its signed assertion to `/session`;
 * the demo relay takes a demo token instead. */
async function signIn() {
  const sellers = await (await fetch("/demo/sellers")).json();
  const token = sellers.find((s) => s.id === seller)?.token;
  const r = await fetch("/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
  if (!r.ok) throw new Error(`sign-in answered ${r.status}`);
  return (await fetch("/me")).json();
}

async function render(client) {
  const { conversations } = await client.inbox();
  $("inbox").replaceChildren(...conversations.map((c) => {
    const li = document.createElement("li");
    li.textContent = `${c.record_name}: ${c.preview} (${c.unread})`;
    return li;
  }));
}

await init();
const me = await signIn();
const client = await SmsClient.open({ dbName: `sms-${me.seller}`, seller: me.seller, defaultRegion: me.default_region ?? undefined });
const connection = await client.connect({ signIn });
connection.subscribe((event) => {
  const li = document.createElement("li");
  li.textContent = JSON.stringify(event);
  $("events").append(li);
  if (event.type === "status") $("status").textContent = event.status;
  if (event.type === "progress") {
    $("progress").hidden = false;
    if (event.total) { $("progress").max = event.total; $("progress").value = event.done; }
  }
  if (event.type === "status" && event.status === "live") $("progress").hidden = true;
  if (event.type === "conversation" || event.type === "notification") render(client);
});
await render(client);
