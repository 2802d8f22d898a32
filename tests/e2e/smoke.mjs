// End-to-end smoke of the demo page in Chromium (playwright-core + Debian chromium):
// sign in, receive a customer's text live, open the pane, send a templated reply,
// see its delivery report, check CSP and accessibility. Usage: node tests/e2e/smoke.mjs URL [screenshot.png]
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const url = process.argv[2] ?? "http://127.0.0.1:8080/";
const shot = process.argv[3];
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const failures = [];
let passed = 0;
const check = (ok, what) => { console.log(`${ok ? "ok  " : "FAIL"} ${what}`); if (ok) passed++; else failures.push(what); };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const cspViolations = [];
  page.on("console", (m) => { if (/Content Security Policy|Refused to/.test(m.text())) cspViolations.push(m.text()); });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  await page.goto(url);
  await page.waitForSelector("#signin:not([hidden])");
  await page.waitForLoadState("networkidle");
  check(consoleErrors.length === 0, `a first visit shows the sign-in form without errors in the console${consoleErrors.length ? ": " + consoleErrors[0] : ""}`);
  check(!(await page.isVisible("#layout")) && !(await page.isVisible("#pane")), "signed out, only the sign-in form shows (no empty grid or pane)");
  await page.selectOption("#seller", { label: "Asha Rao (asha)" });
  await page.click("#signin-btn");
  await page.waitForSelector("#layout:not([hidden])");
  // The customer texts in (simulated provider → signed webhook → relay → SSE → WASM → DOM).
  await page.fill("#phone-body", "Namaste! Is my order ready? <b>not bold</b>");
  await page.click("#phone-send");
  await page.waitForSelector("#grid tbody tr", { timeout: 10000 });
  check((await page.textContent("#grid tbody")).includes("Priya Sharma"), "inbound routed to Priya Sharma's contact, shown live in the grid");
  check((await page.textContent("#unread")) === "1", "bell counts one unread message");
  await page.focus("#grid tbody tr");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#pane:not([hidden])");
  check((await page.textContent("#messages")).includes("<b>not bold</b>"), "message body rendered as text, not HTML");
  check((await page.textContent("#pane-route")).length > 0, "pane explains the routing rule");
  await page.fill("#composer", "Hi {{ contact.first_name }}, yes — it ships today. {{ seller.name }}");
  await page.waitForFunction(() => document.getElementById("preview").textContent.includes("Hi Priya"));
  check((await page.textContent("#counter")).includes("UCS-2"), "counter says UCS-2 (the em dash)");
  await page.click("#send");
  await page.waitForFunction(() => [...document.querySelectorAll("#messages li.outbound .report")].some((r) => /delivered/i.test(r.textContent)), null, { timeout: 10000 });
  check(true, "sent message reaches 'delivered' from the provider's callbacks");
  const received = await page
    .waitForFunction(() => document.getElementById("phone-inbox").textContent.includes("Hi Priya, yes — it ships today. Asha Rao"), null, { timeout: 10000 })
    .then(() => true, () => false);
  check(received, "the customer's phone received the filled template");
  const axe = readFileSync(new URL("../../node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
  await page.evaluate(axe);
  const result = await page.evaluate(async () => await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] }));
  for (const v of result.violations) console.log(`axe: ${v.id} (${v.impact}): ${v.nodes.length} node(s) — ${v.help}`);
  check(result.violations.filter((v) => v.impact === "critical" || v.impact === "serious").length === 0, "no serious accessibility violations (axe, WCAG 2 A/AA)");
  check(cspViolations.length === 0, `no CSP violations ${cspViolations.join(" | ")}`);
  if (shot) await page.screenshot({ path: shot, fullPage: true });

  // P1: the relay answers 503 for a while (an EventSource gives up for good on that);
  // the shell shows it and reconnects on its own, then messages flow again.
  await page.request.post(new URL("/demo/fault", url).href, { data: { events_unavailable_ms: 3000 } });
  const saw = await page
    .waitForFunction(() => document.getElementById("status").textContent.includes("reconnecting"), null, { timeout: 10000 })
    .then(() => true, () => false);
  check(saw, "the page says the relay is unreachable while it is");
  const back = await page
    .waitForFunction(() => !document.getElementById("status").textContent.includes("reconnecting"), null, { timeout: 20000 })
    .then(() => true, () => false);
  check(back, "the page reconnects on its own after 503s");
  await page.fill("#phone-body", "After the outage");
  await page.click("#phone-send");
  const flowed = await page
    .waitForFunction(() => document.querySelector("#messages").textContent.includes("After the outage"), null, { timeout: 10000 })
    .then(() => true, () => false);
  check(flowed, "new messages reach the open pane after the reconnect");

  // N2: with the page's event stream cut, a push doorbell makes the service worker
  // fetch and store the waiting events and show a notification; the page hears the
  // worker's change over BroadcastChannel and shows the message without reload.
  await context.grantPermissions(["notifications"]);
  const page2 = await context.newPage();
  if (process.env.E2E_DEBUG) page2.on("console", (m) => console.log("page2:", m.text()));
  await page2.route("**/events?*", (route) => route.abort());
  await page2.route("**/events", (route) => route.abort());
  const cdp = await context.newCDPSession(page2);
  const registrations = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");
  await page2.goto(url);
  await page2.waitForSelector("#layout:not([hidden])");
  await page2.evaluate(() => navigator.serviceWorker.ready);
  await page.close();
  await page2.fill("#phone-from", "+91 99887 76655");
  await page2.selectOption("#phone-to", "+14155550101");
  await page2.fill("#phone-body", "Pushed while the stream was down");
  await page2.click("#phone-send");
  const origin = new URL(url).origin;
  const registration = registrations.find((r) => r.scopeURL.startsWith(origin) && !r.isDeleted);
  check(Boolean(registration), "the page registered its service worker");
  if (registration) {
    await cdp.send("ServiceWorker.deliverPushMessage", { origin, registrationId: registration.registrationId, data: JSON.stringify({ type: "events_waiting" }) });
    const shown = await page2
      .waitForFunction(async () => (await (await navigator.serviceWorker.ready).getNotifications()).some((n) => n.body.includes("Pushed while")), null, { timeout: 10000, polling: 250 })
      .then(() => true, () => false);
    check(shown, "the worker showed a system notification with the message");
    const listed = await page2
      .waitForFunction(() => document.querySelector("#grid tbody").textContent.includes("Pushed while"), null, { timeout: 10000 })
      .then(() => true, () => false);
    check(listed, "the page shows the message the worker stored, without its own stream");
  }
} finally {
  await browser.close();
}
for (const f of failures) console.log(`failure: ${f}`);
console.log(`e2e: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
