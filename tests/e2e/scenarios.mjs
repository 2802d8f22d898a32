// End-to-end scenarios of the issue's list, each in a fresh browser context (own
// IndexedDB, own session) against one demo relay this script starts, stops and
// restarts itself. Elements are found by role and accessible name, as a screen-reader
// user would. Every scenario saves a screenshot in target/e2e-shots/.
// Usage: node tests/e2e/scenarios.mjs [port] [only-scenario-substring]
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STRINGS } from "../../www/i18n.js";

const port = Number(process.argv[2] ?? 18182);
const only = process.argv[3];
const base = `http://127.0.0.1:${port}/`;
const origin = new URL(base).origin;
const work = mkdtempSync(join(tmpdir(), "sms-e2e-"));
const shots = "target/e2e-shots";
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(new URL("../../node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

// ---- the relay, as a child process we can stop and restart on the same database ----
let relay;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function startRelay() {
  const log = openSync(join(work, "relay.log"), "a");
  relay = spawn("./target/debug/sms-relay", ["--config", "relay/demo/relay.toml", "--bind", `127.0.0.1:${port}`, "--database", join(work, "e2e.db")],
    { stdio: ["ignore", log, log] });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${base}healthz`).then((r) => r.ok, () => false)) return;
    await sleep(100);
  }
  throw new Error(`relay did not start (log: ${join(work, "relay.log")})`);
}
async function stopRelay() {
  const exited = new Promise((r) => relay.once("exit", r));
  relay.kill("SIGTERM");
  await exited;
}
/** The customer's phone (the demo's simulated provider) texts an org number. */
async function customerTexts(from, to, body) {
  const r = await fetch(`${base}demo/phone/send`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ from, to, body }) });
  if (!r.ok) throw new Error(`phone send answered ${r.status}`);
}

/** The administrator prunes every event logged so far (`POST /admin/prune`). */
async function prune() {
  const r = await fetch(`${base}admin/prune`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer demo-admin-token" }, body: JSON.stringify({ keep_after: 1e15 }) });
  return { ok: r.ok, body: await r.json().catch(() => null) };
}

// ---- scenario plumbing ----
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let passed = 0;
const failures = [];
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (ok) passed++; else failures.push(what);
}
/** Waits for `fn` (run in the page) to be truthy; false after `ms`. */
const until = (page, fn, arg, ms = 10000) => page.waitForFunction(fn, arg, { timeout: ms, polling: 100 }).then(() => true, () => false);
const visible = (locator, ms = 10000) => locator.waitFor({ state: "visible", timeout: ms }).then(() => true, () => false);

async function scenario(name, fn) {
  if (only && !name.includes(only)) return;
  console.log(`-- ${name}`);
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const csp = [];
  page.on("console", (m) => { if (/Content Security Policy|Refused to/.test(m.text())) csp.push(m.text()); });
  page.on("pageerror", (e) => failures.push(`${name}: page error: ${e.message}`));
  try {
    await fn({ context, page });
    check(csp.length === 0, `${name}: no CSP violations ${csp.join(" | ")}`);
  } catch (e) {
    check(false, `${name}: ${e.message.split("\n")[0]}`);
  } finally {
    const slug = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
    for (const [i, p] of context.pages().entries()) await p.screenshot({ path: `${shots}/${slug}${i ? `-${i}` : ""}.png`, fullPage: true }).catch(() => {});
    await context.close();
  }
}

async function signIn(page, seller = "Asha Rao (asha)") {
  await page.goto(base);
  await page.getByRole("combobox", { name: "Seller" }).selectOption({ label: seller });
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Records" }).waitFor();
  await until(page, () => document.getElementById("status").textContent.includes("Live"));
}
const pane = (page) => page.getByRole("region").filter({ has: page.locator("#pane-record") });
const paneTitle = (page) => page.locator("#pane-record").textContent();
async function openFromGrid(page, text) {
  const row = page.getByRole("row").filter({ hasText: text }).first();
  await row.waitFor({ timeout: 10000 });
  await row.focus();
  await page.keyboard.press("Enter");
  await pane(page).waitFor({ timeout: 10000 });
}
/** The page's service worker registration, as the DevTools protocol sees it (to deliver pushes). */
async function workerRegistration(context, page) {
  await page.evaluate(() => navigator.serviceWorker.ready);
  const cdp = await context.newCDPSession(page);
  const registrations = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");
  // The registrations arrive as events after `enable` returns: wait for ours.
  const ours = () => registrations.find((r) => r.scopeURL.startsWith(origin) && !r.isDeleted);
  for (let i = 0; i < 100 && !ours(); i++) await sleep(100);
  return { cdp, registration: ours() };
}
async function axe(page) {
  await page.evaluate(axeSource); // through the DevTools protocol: the CSP forbids inline scripts
  const result = await page.evaluate(() => window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] }));
  for (const v of result.violations) console.log(`   axe: ${v.id} (${v.impact}): ${v.nodes.length} node(s) — ${v.help}`);
  return result.violations.filter((v) => v.impact === "critical" || v.impact === "serious");
}

// ---- the Hindi walk (E5) ----
const HI = STRINGS.hi;
/** Runs in the page: Latin-script words in visible text, `aria-label`s, `title`s and the
 * document's title, once `data` (names, ids, bodies, templates) and the allowed list are
 * taken out: provider reason names, GSM-7, UCS-2, E.164, STOP / START, the browser's
 * own date format, a language's own name in the language picker. */
function latinLeftovers({ data }) {
  const shown = (e) => e.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  const texts = [[document.title, "title"]];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walker.nextNode());) {
    const p = n.parentElement;
    // What the seller types is data; options are read per select below.
    if (!p || p.closest("textarea, script, style, option") || !shown(p)) continue;
    texts.push([n.textContent, p.id || p.className || p.tagName]);
  }
  for (const sel of document.querySelectorAll("select")) {
    if (!shown(sel) || sel.id === "lang") continue; // the picker names each language in its own script
    for (const o of sel.options) texts.push([o.textContent, `#${sel.id} option`]);
  }
  for (const e of document.querySelectorAll("[aria-label], [title]")) {
    if (!shown(e)) continue;
    for (const a of ["aria-label", "title"]) if (e.hasAttribute(a)) texts.push([e.getAttribute(a), `${e.id || e.tagName}[${a}]`]);
  }
  // The browser's own date format (e.g. "am" / "pm" in hi-IN).
  const dates = [new Date(2026, 0, 1, 9), new Date(2026, 0, 1, 21)].map((d) => d.toLocaleString("hi-IN", { dateStyle: "short", timeStyle: "short" }));
  const allowed = new Set(["GSM", "UCS", "E", "STOP", "START", ...dates.flatMap((d) => d.match(/[A-Za-z]+/g) ?? [])]);
  const reasons = /\b(?:InvalidSendingParameters|NotMobileNumber|RegionNotEnabled|RecipientUnsubscribed|InvalidSender|BodyTooLong|UnreachableHandset|MessageBlocked|UnknownDestination|LandlineOrUnreachableCarrier|CarrierFiltering|UnknownError|RateLimited|ProviderError|DeliveryFailed)\b/g;
  const known = [...data].sort((a, b) => b.length - a.length);
  const out = [];
  for (const [text, where] of texts) {
    let rest = text.replace(reasons, " ");
    for (const d of known) rest = rest.split(d).join(" ");
    const words = (rest.match(/[A-Za-z]+/g) ?? []).filter((w) => !allowed.has(w));
    if (words.length) out.push(`${where}: ${words.join(" ")} (in "${text.trim().slice(0, 80)}")`);
  }
  return out;
}

await startRelay();
try {
  await scenario("unknown number becomes a lead, rings the bell, opens the pane", async ({ page }) => {
    await signIn(page);
    await customerTexts("+91 91111 22222", "+14155550100", "Hello, who is this?");
    const bell = page.getByRole("button", { name: "Notifications: 1" });
    check(await visible(bell), "bell counts the new message");
    await bell.click();
    await page.keyboard.press("Escape");
    check(await page.getByRole("dialog", { name: "Notifications" }).isHidden() && await bell.evaluate((b) => b === document.activeElement),
      "Escape closes the notification centre and returns focus to the bell");
    await page.keyboard.press("Enter");
    await page.getByRole("dialog", { name: "Notifications" }).getByRole("button", { name: /Hello, who is this\?/ }).click();
    await pane(page).waitFor();
    check((await paneTitle(page)).includes("+919111122222 (Lead)"), "the pane is on the new lead named after the number");
    check(await visible(pane(page).getByText("Hello, who is this?")), "the message is in the pane");
    check(await visible(page.getByRole("button", { name: "Notifications: 0" })), "opening it marks it read");
    const [download] = await Promise.all([page.waitForEvent("download"), pane(page).getByRole("button", { name: "Export" }).click()]);
    const exported = JSON.parse(readFileSync(await download.path(), "utf8"));
    check(exported.messages.length === 1 && exported.messages[0].body === "Hello, who is this?" && exported.record.kind === "lead",
      "Export saves the whole conversation with its record");
  });

  await scenario("a send to an invalid number fails with a reason on hover and focus", async ({ page }) => {
    await signIn(page);
    await page.getByRole("link", { name: "Records" }).click();
    await page.getByRole("link", { name: "Vikram Shah (Contact)" }).click();
    await page.getByRole("button", { name: "Text +91 96000 54321" }).click();
    await pane(page).waitFor();
    await page.getByRole("combobox", { name: "To", exact: true }).selectOption("+1 500-555-0001");
    await pane(page).getByRole("textbox", { name: "Message" }).fill("Checking your number");
    await pane(page).getByRole("button", { name: "Send" }).click();
    const report = pane(page).locator(".report.failed").filter({ hasText: "InvalidSendingParameters" });
    check(await visible(report), "the message shows as failed: InvalidSendingParameters");
    await report.hover();
    const tip = pane(page).getByRole("tooltip");
    check(await visible(tip), "hovering shows the reason");
    check((await tip.textContent()).includes("E.164"), "the reason says to fix the number to E.164");
    await page.mouse.move(0, 0);
    await report.focus();
    check(await tip.isVisible(), "keyboard focus shows the reason too");
    // A number that is not even well-formed is refused before it leaves the page, with the reason.
    await page.getByRole("combobox", { name: "To", exact: true }).selectOption("9600-054");
    await pane(page).getByRole("textbox", { name: "Message" }).fill("Second try");
    check(await visible(pane(page).getByText("This customer number is not valid")), "a malformed number is refused before sending, with the fix");
    check(await pane(page).getByRole("button", { name: "Send" }).isDisabled(), "and Send is disabled for it");
  });

  await scenario("a conversation moved from an account to a contact takes later replies with it", async ({ page }) => {
    await signIn(page);
    await customerTexts("+91 97000 12345", "+14155550100", "Globex here");
    await openFromGrid(page, "Globex Traders");
    check((await paneTitle(page)).includes("Globex Traders (Account)"), "the first message is on the account");
    await pane(page).getByRole("searchbox", { name: "Change record" }).fill("Meena");
    await pane(page).getByRole("button", { name: "Meena Joshi (Contact)" }).click();
    check(await until(page, () => document.getElementById("pane-record").textContent.includes("Meena Joshi")), "after the relay confirms, the pane is on the contact");
    check(await until(page, () => document.getElementById("pane-moves").textContent.includes("Globex Traders → Meena Joshi")), "the move is in the audit trail, by name");
    check(await until(page, () => /^Moved here from Globex Traders by asha \(.+\)\.$/.test(document.getElementById("pane-route").textContent)),
      "the pane says who moved it here and when, instead of the original routing rule (B1)");
    await customerTexts("+91 97000 12345", "+14155550100", "Following up");
    check(await visible(page.getByRole("row").filter({ hasText: "Meena Joshi" }).filter({ hasText: "Following up" })), "the reply lands on the contact");
    check(await page.getByRole("row").filter({ hasText: "Globex Traders" }).count() === 0, "the account no longer lists the conversation");
    check(await until(page, () => ![...document.querySelectorAll("#grid tbody tr")].some((tr) => tr.textContent.includes("Following up") && tr.querySelector(".badge"))),
      "a reply arriving in the open pane is read at once (no unread marker)");
    const history = await page.locator("#messages").textContent();
    check(history.includes("Globex here") && history.includes("Following up"), "the whole history shows on the contact");
  });

  await scenario("record pages, the related-record drop-down and the work list open the pane", async ({ page }) => {
    await signIn(page);
    await page.getByRole("link", { name: "Records" }).click();
    await page.getByRole("link", { name: "Priya Sharma (Contact)" }).click();
    check(await visible(page.getByRole("heading", { name: "Priya Sharma" })), "the contact's record page");
    await page.getByRole("button", { name: "Text +91 98123 00000" }).click();
    await pane(page).waitFor();
    check((await paneTitle(page)).includes("Priya Sharma (Contact)"), "the mobile-phone icon opens the contact's conversation");
    check((await page.getByRole("combobox", { name: "To", exact: true }).inputValue()) === "+919812300000", "on the number beside the icon");
    const toNumbers = await page.locator("#pane-to option").evaluateAll((os) => os.map((o) => o.value.replace(/[^\d]/g, "")));
    check(toNumbers.length > 0 && new Set(toNumbers).size === toNumbers.length, `no number offered twice in To (${toNumbers.join(", ")})`);
    // B7: the 1,600-character limit is counted down before it is hit, then refused.
    const composer = pane(page).getByRole("textbox", { name: "Message" });
    await composer.fill("a".repeat(1450));
    check(await until(page, () => document.getElementById("counter").textContent.includes("150 characters left")), "the counter announces the limit before it is hit");
    await composer.fill("a".repeat(1601));
    check(await until(page, () => document.getElementById("counter").textContent.includes("Over the 1,600-character limit")), "over the limit is said in words");
    check(await pane(page).getByRole("button", { name: "Send" }).isDisabled(), "and cannot be sent");
    // C3: no template fits → the text becomes one; picking it previews the record's values.
    await composer.fill("Hi {{ contact.first_name }}, your delivery slot is confirmed.");
    await pane(page).getByText("Save as a new template").click();
    await pane(page).getByRole("textbox", { name: "Template name" }).fill("Slot confirmed");
    await pane(page).getByRole("button", { name: "Save template" }).click();
    check(await visible(pane(page).getByText("Saved: Slot confirmed")), "a new template is saved from the composer");
    await composer.fill("");
    await pane(page).getByRole("combobox", { name: "Template" }).selectOption({ label: "Slot confirmed (English)" });
    check(await until(page, () => document.getElementById("preview").textContent === "Hi Priya, your delivery slot is confirmed."), "choosing it previews the text with the record's values");
    await composer.fill("");
    const related = page.getByRole("combobox", { name: "Related record" });
    check((await related.locator("option").allTextContents()).some((o) => o.includes("Q3 bulk order")), "the drop-down lists the contact's opportunities");
    await related.selectOption({ label: "Sharma Traders — Q3 bulk order (Opportunity)" });
    check(await until(page, () => document.getElementById("pane-record").textContent.includes("Q3 bulk order")), "choosing one switches the pane to the opportunity");
    await page.getByRole("link", { name: "Up next" }).click();
    await page.getByRole("button", { name: "Open text step: Priya Sharma" }).click();
    check(await until(page, () => document.getElementById("pane-record").textContent.includes("Priya Sharma (Contact)")), "a text step of the work list opens the pane");
  });

  await scenario("two tabs stay in sync", async ({ context, page }) => {
    await signIn(page, "Zoe Fernandes (zoe)");
    const other = await context.newPage();
    await other.goto(base);
    await until(other, () => document.getElementById("status").textContent.includes("Live"));
    await customerTexts("+91 95555 00001", "+14155550102", "Hello two tabs");
    check(await visible(page.getByRole("button", { name: "Notifications: 1" })) && await visible(other.getByRole("button", { name: "Notifications: 1" })), "both tabs ring");
    await openFromGrid(page, "Hello two tabs");
    check(await visible(other.getByRole("button", { name: "Notifications: 0" })), "reading it in one tab clears the other's bell");
    await openFromGrid(other, "Hello two tabs");
    await pane(page).getByRole("textbox", { name: "Message" }).fill("Sent from tab one");
    await pane(page).getByRole("button", { name: "Send" }).click();
    check(await visible(pane(other).getByText("Sent from tab one")), "a message sent in one tab shows in the other's open pane");
  });

  await scenario("a reload in the middle of a burst loses nothing", async ({ page }) => {
    await signIn(page);
    const sending = (async () => { for (let i = 1; i <= 30; i++) await customerTexts("+91 95555 00002", "+14155550100", `burst ${i}`); })();
    await until(page, () => document.querySelector("#grid tbody").textContent.includes("burst"), null, 10000);
    await page.reload();
    await sending;
    await openFromGrid(page, "burst");
    check(await until(page, () => [...document.querySelectorAll("#messages li.inbound")].filter((li) => li.textContent.includes("burst ")).length === 30, null, 15000),
      "all 30 messages are there after the reload, once each");
  });

  await scenario("the page reconnects and catches up after a relay restart", async ({ page }) => {
    await signIn(page);
    await stopRelay();
    check(await until(page, () => document.getElementById("status").textContent.includes("reconnecting")), "the page says the relay is unreachable");
    await startRelay();
    await customerTexts("+91 95555 00003", "+14155550100", "Sent while you were away");
    check(await until(page, () => document.querySelector("#grid tbody").textContent.includes("Sent while you were away"), null, 40000), "it reconnects by itself and catches up");
    check(await until(page, () => !document.getElementById("status").textContent.includes("reconnecting")), "the warning goes away");
  });

  await scenario("a new device on a pruned log starts from the relay's snapshot", async ({ page }) => {
    for (const body of ["Snapshot one", "Snapshot two", "Snapshot three"]) await customerTexts("+91 95555 00011", "+14155550100", body);
    check((await prune()).ok, "the administrator prunes the whole log");
    const asked = [];
    page.on("request", (r) => asked.push(new URL(r.url()).pathname));
    await signIn(page);
    check(asked.includes("/snapshot"), "the page took the snapshot");
    check(await visible(page.getByRole("row").filter({ hasText: "Snapshot three" })), "the grid shows the conversation");
    await openFromGrid(page, "Snapshot three");
    const shown = await pane(page).locator("#messages").textContent();
    check(["Snapshot one", "Snapshot two", "Snapshot three"].every((b) => shown.includes(b)), "its whole history is in the pane");
    await customerTexts("+91 95555 00011", "+14155550100", "After the snapshot");
    check(await visible(pane(page).getByText("After the snapshot")), "later messages stream in after it");
  });

  await scenario("a device whose position was pruned catches up from a snapshot", async ({ context, page }) => {
    await signIn(page);
    await customerTexts("+91 95555 00012", "+14155550100", "Before the gap");
    check(await visible(page.getByRole("row").filter({ hasText: "Before the gap" })), "the first message arrives live");
    await page.close();
    for (const body of ["Missed one", "Missed two"]) await customerTexts("+91 95555 00012", "+14155550100", body);
    check((await prune()).ok, "the log is pruned past what this device applied");
    const again = await context.newPage();
    const asked = [];
    again.on("request", (r) => asked.push(new URL(r.url()).pathname));
    await again.goto(base);
    check(await until(again, () => document.getElementById("status").textContent.includes("Live"), null, 20000), "it is live again");
    check(asked.includes("/snapshot"), "it took a snapshot instead of skipping the pruned events");
    await openFromGrid(again, "Missed two");
    const shown = await pane(again).locator("#messages").textContent();
    check(["Before the gap", "Missed one", "Missed two"].every((b) => shown.includes(b)), "nothing is missing");
    check((shown.match(/Before the gap/g) ?? []).length === 1, "nothing is doubled");
  });

  await scenario("an erased customer disappears from two open tabs", async ({ context, page }) => {
    await signIn(page);
    const other = await context.newPage();
    await other.goto(base);
    await until(other, () => document.getElementById("status").textContent.includes("Live"));
    await customerTexts("+91 95555 00013", "+14155550100", "Please forget me");
    const row = (p) => p.getByRole("row").filter({ hasText: "Please forget me" });
    check(await visible(row(page)) && await visible(row(other)), "both tabs show the customer's message");
    await openFromGrid(other, "Please forget me");
    const r = await fetch(`${base}admin/customers/erase`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer demo-admin-token" }, body: JSON.stringify({ number: "+919555500013" }) });
    check(r.ok, `the administrator erases the number (${r.status})`);
    const gone = (p) => until(p, () => ![...document.querySelectorAll("#grid tbody tr")].some((tr) => tr.textContent.includes("Please forget me")), null, 15000);
    check(await gone(page) && await gone(other), "it leaves both tabs' grids");
    check(await until(other, () => document.getElementById("pane").hidden, null, 10000), "the pane open on it closes");
    const kept = await page.evaluate(() => new Promise((ok) => {
      const open = indexedDB.open("sms-asha");
      open.onsuccess = () => {
        const tx = open.result.transaction(["messages", "conversations"]);
        const all = [tx.objectStore("messages").getAll(), tx.objectStore("conversations").getAll()];
        tx.oncomplete = () => { open.result.close(); ok(all.map((q) => q.result.filter((x) => JSON.stringify(x).includes("+919555500013")).length)); };
      };
    }));
    check(kept[0] === 0 && kept[1] === 0, `nothing of it stays in the browser's database (${kept})`);
  });

  await scenario("an opted-out customer cannot be texted, and says so", async ({ page }) => {
    await signIn(page);
    await customerTexts("+91 95555 00007", "+14155550100", "Hi there");
    await customerTexts("+91 95555 00007", "+14155550100", "STOP");
    await openFromGrid(page, "STOP");
    check(await visible(pane(page).getByText("Opted out (replied STOP)")), "the consent badge says the customer opted out");
    await pane(page).getByRole("textbox", { name: "Message" }).fill("One more offer");
    check(await visible(pane(page).getByText("This customer replied STOP")), "the reason is shown before sending");
    check(await pane(page).getByRole("button", { name: "Send" }).isDisabled(), "and Send is refused");
  });

  await scenario("a message written while the relay is unreachable waits, then goes out once", async ({ page }) => {
    await signIn(page);
    await customerTexts("+91 95555 00008", "+14155550100", "Are you there?");
    await openFromGrid(page, "Are you there?");
    await page.route("**/messages", (route) => route.abort());
    await pane(page).getByRole("textbox", { name: "Message" }).fill("Written while the relay is away");
    await pane(page).getByRole("button", { name: "Send" }).click();
    const item = pane(page).getByRole("listitem").filter({ hasText: "Written while the relay is away" });
    check(await visible(item.getByText("Queued — will send when the relay is back")), "the message shows as queued");
    await page.unroute("**/messages");
    check(await visible(item.getByText("delivered"), 30000), "it goes out by itself when the relay is back, and is delivered");
    const inbox = await (await fetch(`${base}demo/phone/messages?number=%2B919555500008`)).json();
    check(inbox.filter((m) => m.body === "Written while the relay is away").length === 1, "the customer received it exactly once");
  });

  await scenario("markup in a message is shown as text", async ({ page }) => {
    await signIn(page);
    await customerTexts("+91 95555 00004", "+14155550100", '<img src=x onerror="window.pwned=1">');
    await openFromGrid(page, "<img src=x");
    check(await visible(pane(page).getByText('<img src=x onerror="window.pwned=1">')), "the body is shown literally");
    check(await page.locator("#messages img").count() === 0 && (await page.evaluate(() => window.pwned)) === undefined, "no element was created and nothing ran");
    const policy = (await page.request.get(base)).headers()["content-security-policy"];
    check(policy === "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; base-uri 'none'; frame-ancestors 'self'", `the page is served under the strict policy (${policy})`);
    // B8: media arrive as links (a thumbnail only for this origin's images: the policy loads nothing else).
    const r = await fetch(`${base}demo/phone/send`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ from: "+91 95555 00004", to: "+14155550100", body: "photo", media: [{ url: "https://media.example/cat.jpg", content_type: "image/jpeg" }] }) });
    check(r.ok, "the phone sends an MMS");
    check(await visible(pane(page).getByRole("link", { name: "Attachment: image" })), "the picture shows as a link in the pane");
  });

  await scenario("a full disk is reported and nothing is half-written", async ({ context, page }) => {
    await signIn(page);
    const cdp = await context.newCDPSession(page);
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 1 });
    // Chromium's IndexedDB caches the space left for up to ~30 s: wait until a probe
    // write in another database of the origin is refused.
    const probe = () => page.evaluate(() => new Promise((ok) => {
      const open = indexedDB.open("quota-probe", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("s");
      open.onsuccess = () => {
        const tx = open.result.transaction("s", "readwrite");
        tx.objectStore("s").put("x".repeat(10000), Math.random());
        tx.oncomplete = () => { open.result.close(); ok(false); };
        tx.onabort = () => { open.result.close(); ok(true); };
      };
      open.onerror = () => ok(true);
    }));
    let full = false;
    for (let i = 0; i < 40 && !(full = await probe()); i++) await sleep(2000);
    check(full, "the browser's storage now refuses writes");
    await customerTexts("+91 95555 00005", "+14155550100", "Does this fit?");
    check(await visible(page.getByRole("alert").filter({ hasText: /storage/ })), "the page says it could not save, naming the storage");
    check(await until(page, () => document.getElementById("status").textContent.includes("Storage full")), "the status line says so until it is resolved");
    const stored = await page.evaluate(() => new Promise((ok) => {
      const open = indexedDB.open("sms-asha");
      open.onsuccess = () => {
        const tx = open.result.transaction(["messages", "conversations"]);
        const all = [tx.objectStore("messages").getAll(), tx.objectStore("conversations").getAll()];
        tx.oncomplete = () => { open.result.close(); ok(all.map((r) => r.result.filter((x) => JSON.stringify(x).includes("+919555500005")).length)); };
      };
    }));
    check(stored[0] === 0 && stored[1] === 0, `no message and no conversation of it were written (${stored})`);
    check(await page.getByRole("row").filter({ hasText: "Does this fit?" }).count() === 0, "the grid does not show a half-written conversation");
    await cdp.send("Storage.overrideQuotaForOrigin", { origin });
    check(await visible(page.getByRole("row").filter({ hasText: "Does this fit?" }), 40000), "once space is back, the message arrives");
  });

  await scenario("a push with no page open stores the message, notifies, and a click opens its conversation", async ({ context, page }) => {
    await context.grantPermissions(["notifications"], { origin });
    await signIn(page);
    const { registration } = await workerRegistration(context, page);
    check(Boolean(registration), "the page registered its service worker");
    // Only a blank tab stays: no page of the app is open.
    const blank = await context.newPage();
    await page.close();
    await customerTexts("+91 95555 00006", "+14155550101", "Pushed while away");
    const cdpBlank = await context.newCDPSession(blank);
    await cdpBlank.send("ServiceWorker.enable");
    await cdpBlank.send("ServiceWorker.deliverPushMessage", { origin, registrationId: registration.registrationId, data: JSON.stringify({ type: "events_waiting" }) });
    const [worker] = context.serviceWorkers().length ? context.serviceWorkers() : [await context.waitForEvent("serviceworker")];
    const shown = await (async () => {
      for (let i = 0; i < 100; i++) {
        const bodies = await worker.evaluate(async () => (await self.registration.getNotifications()).map((n) => n.body));
        if (bodies.some((b) => b.includes("Pushed while away"))) return true;
        await sleep(100);
      }
      return false;
    })();
    check(shown, "the worker stored the events and showed a notification");
    // No protocol command clicks a system notification: dispatch the event in the worker.
    // A script-dispatched event may not open windows, so record the URL it asks for.
    const asked = await worker.evaluate(async () => {
      const [n] = (await self.registration.getNotifications()).filter((x) => x.body.includes("Pushed while away"));
      let url = null;
      self.clients.openWindow = async (u) => { url = u; return null; };
      self.dispatchEvent(new NotificationEvent("notificationclick", { notification: n }));
      for (let i = 0; i < 50 && !url; i++) await new Promise((r) => setTimeout(r, 100));
      return url;
    });
    check(Boolean(asked?.includes("conversation=")), `with no page open, the click asks to open the conversation's URL (${asked})`);
    // That URL, opened with the event stream cut, shows what the worker stored.
    const app = await context.newPage();
    await app.route("**/events*", (route) => route.abort());
    await app.goto(new URL(asked ?? "/", base).href);
    check(await until(app, () => document.getElementById("messages").textContent.includes("Pushed while away"), null, 15000), "the page opens on the conversation the worker stored");
    // With the page open, a click focuses it on that conversation.
    await app.locator("#pane-close").click();
    const conversation = new URL(asked ?? "/", base).searchParams.get("conversation");
    await worker.evaluate(async (conversation) => {
      // The first click closed its notification; the worker shows it again, as a new push would.
      await self.registration.showNotification("New text message", { body: "Pushed while away", tag: conversation, data: { conversation } });
      const [n] = await self.registration.getNotifications({ tag: conversation });
      self.dispatchEvent(new NotificationEvent("notificationclick", { notification: n }));
    }, conversation);
    check(await until(app, () => !document.getElementById("pane").hidden && document.getElementById("messages").textContent.includes("Pushed while away")), "with the page open, the click shows that conversation in it");
  });

  await scenario("no accessibility violations with the pane open, in English and in Hindi", async ({ page }) => {
    await signIn(page);
    await page.getByRole("link", { name: "Records" }).click();
    await page.getByRole("link", { name: "Priya Sharma (Contact)" }).click();
    await page.getByRole("button", { name: "Text +91 98123 45678" }).click();
    await pane(page).waitFor();
    const en = await axe(page);
    check(en.length === 0, `English: no serious axe violations (${en.map((v) => v.id)})`);
    await page.getByRole("combobox", { name: "Language" }).selectOption("hi");
    await until(page, () => document.documentElement.lang === "hi");
    const hi = await axe(page);
    check(hi.length === 0, `Hindi: no serious axe violations (${hi.map((v) => v.id)})`);
  });

  await scenario("in Hindi, nothing but data and the allowed list is in Latin script (E5)", async ({ context, page }) => {
    await context.grantPermissions(["notifications"], { origin });
    await signIn(page);
    const directory = (await (await page.request.get(`${base}directory`)).json()).directory;
    await page.getByRole("combobox", { name: "Language" }).selectOption("hi");
    await until(page, () => document.documentElement.lang === "hi");
    // Data: what the CRM, the customer or the seller wrote (names, ids, templates, bodies).
    const bodies = ["Where is my parcel?", "Checking your number"];
    const data = [...bodies, ...(directory.records ?? []).flatMap((r) => [r.name, r.id]), ...(directory.sellers ?? []).flatMap((s) => [s.name, s.id]),
      ...(directory.teams ?? []).map((t) => t.id), ...(directory.templates ?? []).flatMap((t) => [t.name, t.body])].filter(Boolean);
    const leftovers = [];
    // Message bodies (and the grid's 80-character previews of them) as stored, whoever sent them.
    const stored = () => page.evaluate(() => new Promise((ok) => {
      const open = indexedDB.open("sms-asha");
      open.onsuccess = () => {
        const all = open.result.transaction(["messages"]).objectStore("messages").getAll();
        all.onsuccess = () => { open.result.close(); ok(all.result.flatMap((m) => [m.body, [...m.body].slice(0, 80).join("")])); };
      };
    }));
    const walk = async (where) => {
      const found = await page.evaluate(latinLeftovers, { data: [...data, ...(await stored())] });
      for (const f of found) leftovers.push(`${where}: ${f}`);
      return found;
    };

    // The grid and the bell, after an unknown number texts.
    await customerTexts("+91 93333 44444", "+14155550100", bodies[0]);
    check(await until(page, () => document.querySelector("#grid tbody").textContent.includes("Where is my parcel?")), "the grid shows the new message");
    check(await until(page, () => document.title === "एक्मे सीआरएम — टेक्स्ट संदेश"), "the title is in Hindi");
    check(await until(page, (live) => document.getElementById("status").textContent.includes(live), HI.connected), "the status line is in Hindi");
    await walk("grid");
    await page.locator("#bell").click();
    await page.getByRole("dialog", { name: HI.notifications }).waitFor();
    await walk("bell");
    await page.getByRole("dialog", { name: HI.notifications }).getByRole("button", { name: /Where is my parcel\?/ }).click();
    await pane(page).waitFor();
    check(await until(page, (because) => document.getElementById("pane-route").textContent.startsWith(because), HI.routed_by), "the pane says in Hindi why the lead holds the conversation");
    await walk("pane of a new lead");
    // B1: after a move, who moved it here and when, in Hindi.
    await pane(page).getByRole("searchbox", { name: HI.move_to }).fill("Meena");
    await pane(page).getByRole("button", { name: /^Meena Joshi \(/ }).click(); // its kind is checked by the walk below
    check(await until(page, () => /^asha ने इसे .+ से यहाँ स्थानांतरित किया \(.+\)।$/.test(document.getElementById("pane-route").textContent)),
      "after a move the pane says, in Hindi, who moved it here and when");
    await walk("pane after a move");

    // A record page, then a send that fails, hovered.
    await page.getByRole("link", { name: HI.records }).click();
    await page.getByRole("link", { name: `Vikram Shah (${HI.contact})` }).click();
    check(await visible(page.getByRole("heading", { name: "Vikram Shah" })), "the record page");
    await walk("record page");
    await page.getByRole("button", { name: `${HI.text_number} +91 96000 54321` }).click();
    await pane(page).waitFor();
    await page.getByRole("combobox", { name: HI.send_to, exact: true }).selectOption("+1 500-555-0001");
    await pane(page).getByRole("textbox", { name: HI.message }).fill(bodies[1]);
    await pane(page).getByRole("button", { name: HI.send }).click();
    const report = pane(page).locator(".report.failed").last();
    check(await visible(report), "the send fails");
    check((await report.textContent()).startsWith(HI.delivery_failed), "its status is in Hindi");
    await report.hover();
    const tip = report.getByRole("tooltip");
    check(await visible(tip), "hovering shows the reason");
    const why = await tip.textContent();
    check(/[\u0900-\u097F]/.test(why) && why.includes("E.164"), `the reason and the fix (E.164) are in Hindi (${why})`);
    // Item 7: the tooltip of the last message is not cut off by the scrolling list.
    const clipped = await tip.evaluate((t) => {
      const r = t.getBoundingClientRect();
      const corners = [[r.left + 2, r.top + 2], [r.right - 2, r.top + 2], [r.left + 2, r.bottom - 2], [r.right - 2, r.bottom - 2]];
      return corners.filter(([x, y]) => !t.contains(document.elementFromPoint(x, y))).length;
    });
    check(clipped === 0, `the last message's tooltip is shown whole (${clipped} corner(s) hidden)`);
    await walk("pane with a failed message, hovered");
    await page.mouse.move(0, 0);

    // The service worker's notification, in the language the page chose.
    const { cdp, registration } = await workerRegistration(context, page);
    await customerTexts("+91 93333 44444", "+14155550100", "Any news?");
    await cdp.send("ServiceWorker.deliverPushMessage", { origin, registrationId: registration?.registrationId, data: JSON.stringify({ type: "events_waiting" }) });
    const [worker] = context.serviceWorkers().length ? context.serviceWorkers() : [await context.waitForEvent("serviceworker")];
    let notes = [];
    for (let i = 0; i < 100 && !notes.length; i++) {
      notes = await worker.evaluate(async () => (await self.registration.getNotifications()).map((n) => ({ title: n.title, body: n.body })));
      if (!notes.length) await sleep(100);
    }
    check(notes.length > 0, "the worker showed a notification");
    for (const n of notes) {
      const latin = (n.title.match(/[A-Za-z]+/g) ?? []).concat(n.body === "Any news?" ? [] : (n.body.match(/[A-Za-z]+/g) ?? []));
      if (latin.length) leftovers.push(`notification "${n.title}" / "${n.body}": ${latin.join(", ")}`);
    }
    check(notes.every((n) => n.title === HI.notif_title_new || n.title === HI.notif_title_privilege), `its title is in Hindi (${notes.map((n) => n.title)})`);

    // Offline, the demo phone panel's polling throws nothing (item 7).
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await context.setOffline(true);
    await sleep(4500);
    await context.setOffline(false);
    check(!errors.some((e) => /Failed to fetch/.test(e)), `no uncaught "Failed to fetch" while offline (${errors})`);
    await walk("status line after going offline and back");

    check(leftovers.length === 0, `no Latin-script word outside data and the allowed list${leftovers.length ? `:\n     ${[...new Set(leftovers)].join("\n     ")}` : ""}`);
  });
} finally {
  await browser.close();
  await stopRelay().catch(() => {});
}
for (const f of failures) console.log(`failure: ${f}`);
console.log(`e2e scenarios: ${passed} passed, ${failures.length} failed (screenshots in ${shots}/)`);
process.exit(failures.length ? 1 : 0);
