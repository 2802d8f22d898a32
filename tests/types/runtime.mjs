// The declared types against real values: drives the module in Chromium (served by a
// relay at URL), then checks each value against its type in the generated `.d.ts`
// with the TypeScript checker. Catches a serde shape drifting from its declaration.
// Usage: node tests/types/runtime.mjs URL
import { chromium } from "playwright-core";
import ts from "typescript";

const url = process.argv[2] ?? "http://127.0.0.1:8080/";
const dts = new URL("../../www/pkg/sms_module.d.ts", import.meta.url).pathname;
const program = ts.createProgram([dts], { strict: true, lib: ["lib.esnext.d.ts", "lib.dom.d.ts"] });
const checker = program.getTypeChecker();
const source = program.getSourceFile(dts);
const declared = new Map();
ts.forEachChild(source, (n) => {
  if ((ts.isInterfaceDeclaration(n) || ts.isTypeAliasDeclaration(n)) && n.name) declared.set(n.name.text, checker.getTypeAtLocation(n.name));
});

/** Mismatches of `value` against `type` (an empty list when it conforms). */
function mismatches(value, type, path) {
  const F = ts.TypeFlags;
  if (type.flags & (F.Any | F.Unknown)) return [];
  if (type.isUnion()) {
    const each = type.types.map((t) => mismatches(value, t, path));
    return each.some((m) => m.length === 0) ? [] : each.reduce((a, b) => (b.length < a.length ? b : a));
  }
  if (type.isIntersection()) return type.types.flatMap((t) => mismatchesLoose(value, t, path));
  const fail = (what) => [`${path}: ${JSON.stringify(value)?.slice(0, 60)} is not ${what}`];
  if (type.flags & F.Null) return value === null ? [] : fail("null");
  if (type.flags & F.Undefined) return value === undefined ? [] : fail("undefined");
  if (type.flags & F.StringLiteral) return value === type.value ? [] : fail(JSON.stringify(type.value));
  if (type.flags & F.NumberLiteral) return value === type.value ? [] : fail(String(type.value));
  if (type.flags & F.BooleanLiteral) return value === (checker.typeToString(type) === "true") ? [] : fail(checker.typeToString(type));
  if (type.flags & F.String) return typeof value === "string" ? [] : fail("a string");
  if (type.flags & F.Number) return typeof value === "number" ? [] : fail("a number");
  if (type.flags & F.Boolean) return typeof value === "boolean" ? [] : fail("a boolean");
  if (checker.isArrayType(type)) {
    if (!Array.isArray(value)) return fail("an array");
    const [item] = checker.getTypeArguments(type);
    return value.flatMap((v, i) => mismatches(v, item, `${path}[${i}]`));
  }
  if (type.flags & F.Object) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return fail("an object");
    return [...mismatchesLoose(value, type, path), ...Object.keys(value)
      .filter((k) => !type.getProperty(k))
      .map((k) => `${path}.${k}: not declared`)];
  }
  return [`${path}: cannot check ${checker.typeToString(type)}`];
}

/** The declared properties of `type` in `value` (extra keys allowed: intersections). */
function mismatchesLoose(value, type, path) {
  if (!(type.flags & ts.TypeFlags.Object)) return mismatches(value, type, path);
  if (value === null || typeof value !== "object") return [`${path}: not an object`];
  return type.getProperties().flatMap((p) => {
    const t = checker.getTypeOfSymbol(p);
    const optional = p.flags & ts.SymbolFlags.Optional;
    if (!(p.name in value)) return optional ? [] : [`${path}.${p.name}: missing`];
    return mismatches(value[p.name], optional ? checker.getNonNullableType(t) : t, `${path}.${p.name}`)
      .filter(() => !(optional && value[p.name] === undefined));
  });
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const failures = [];
let passed = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  await page.goto(new URL("favicon.svg", url).href);
  const samples = await page.evaluate(async () => {
    const m = await import("/pkg/sms_module.js");
    await m.default();
    const dbName = `types-${Date.now()}`;
    const sent = [];
    let offline = false;
    const client = await m.SmsClient.open({ dbName, seller: "asha", defaultRegion: "IN",
      transport: async (r) => {
        if (offline) throw new TypeError("Failed to fetch");
        sent.push(r);
        return { outcome: "accepted", message_sid: `SM-out-${sent.length}` };
      } });
    const asha = { seller: "asha" };
    await client.importDirectory({ sellers: [{ id: "asha", name: "Asha" }], teams: [{ id: "north", members: ["asha"] }],
      org_numbers: [{ number: "+14155550100", owner: asha }],
      records: [{ id: "contact:priya", kind: "contact", owner: asha, phones: ["+919812345678"], name: "Priya Sharma", related: ["opportunity:renewal"] },
        { id: "opportunity:renewal", kind: "opportunity", owner: asha, name: "Renewal", related: ["contact:priya"] }] });
    const at = (s) => new Date(Date.UTC(2026, 10, 27, 10, 0, s)).toISOString();
    const outcome = await client.ingest({ epoch: "e1", id: 1, kind: "inbound", message_sid: "SM1", from: "+919812345678", to: "+14155550100",
      body: "Namaste", media: [{ url: "https://example.test/a.jpg", content_type: "image/jpeg" }], at: at(0), record_id: "contact:priya", rule: "only_match" });
    const lead = await client.ingest({ epoch: "e1", id: 2, kind: "inbound", message_sid: "SM2", from: "+919800000001", to: "+14155550100",
      body: "Who is this?", at: at(1), record_id: "lead:+919800000001", rule: "new_lead" });
    const many = await client.ingestMany([{ epoch: "e1", id: 3, kind: "consent_changed", org_number: "+14155550100",
      customer_number: "+919800000001", consent: "opted_out", at: at(2) }]);
    const opened = await client.openConversation(outcome.conversation_id, { via: "notification", id: "SM1" });
    const edited = await client.dispatch({ type: "composer_edited", text: "Hi {{ contact.first_name }} {{ order.id }}" });
    const afterSend = await client.dispatch({ type: "send", client_ref: "c1", confirm_missing: true });
    await client.ingest({ epoch: "e1", id: 4, kind: "delivery", message_sid: "SM-out-1", status: "undelivered", error_code: 30003,
      from: "+14155550100", to: "+919812345678", at: at(3) });
    const reported = await client.syncPane();
    const failedView = reported.messages.find((x) => x.failure) ?? null;
    const closed = await client.dispatch({ type: "close" });
    const byRecord = await client.openRecord("contact:priya", null, { via: "record_phone", field: "mobile_phone" });
    offline = true;
    await client.dispatch({ type: "composer_edited", text: "Sent while offline" });
    const queuedView = await client.dispatch({ type: "send", client_ref: "c2" });
    await client.putTemplate({ id: "t1", name: "Ships", category: "contact", language: "en", body: "Hi {{ contact.first_name }}" });
    const result = {
      IngestOutcome: [outcome, lead, ...many],
      PaneView: [opened, edited, afterSend, reported, byRecord, queuedView],
      "PaneView | null": [closed],
      MessageView: failedView ? [failedView] : [],
      ConversationSummary: await client.conversations(),
      Notification: await client.notifications(),
      HistoryPage: [await client.history(outcome.conversation_id, null, 10)],
      CrmRecord: [await client.record("contact:priya"), ...(await client.related("contact:priya")), ...(await client.lookup("Priya"))],
      Template: await client.templates(null, null),
      OutboxEntry: await client.outbox(),
      RouteDecision: [await client.previewRoute("+919812345678", "+14155550100"), await client.previewRoute("+919800000009", "+14155550100")],
      SegmentCount: [m.smsSegments("Namaste — ready")],
      Rendered: [m.renderTemplate("Hi {{ name }} {{ x }}", { name: "Priya" })],
    };
    result.ExportedConversation = [await client.exportConversation(outcome.conversation_id)];
    await client.signOut(true);
    client.close();
    return { result, sent: sent.length, failed: Boolean(failedView) };
  });
  // The relay connection's events, against the demo relay serving this page.
  const connected = await page.evaluate(async () => {
    const m = await import("/pkg/sms_module.js");
    const sellers = await (await fetch("/demo/sellers")).json();
    await fetch("/session", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: sellers.find((x) => x.id === "asha").token }) });
    const client = await m.SmsClient.open({ dbName: `types-sync-${Date.now()}`, seller: "asha", defaultRegion: "IN" });
    const events = [];
    const connection = await client.connect({});
    connection.subscribe((e) => events.push(e));
    const until = async (f) => { for (let i = 0; i < 150 && !f(); i++) await new Promise((r) => setTimeout(r, 100)); };
    await until(() => events.some((e) => e.type === "status" && e.status === "live"));
    await fetch("/demo/phone/send", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ from: "+91 95557 00001", to: "+14155550100", body: "types check" }) });
    await until(() => events.some((e) => e.type === "notification"));
    const status = connection.status();
    connection.disconnect();
    const caughtUp = await client.catchUp({});
    await client.signOut(true);
    client.close();
    return { SyncEvent: events, SyncStatus: [status], CatchUpResult: [caughtUp] };
  });
  Object.assign(samples.result, connected);
  const check = (ok, what) => { console.log(`${ok ? "ok  " : "FAIL"} ${what}`); if (ok) passed++; else failures.push(what); };
  const kinds = new Set(connected.SyncEvent.map((e) => e.type));
  check(["status", "progress", "conversation", "notification"].every((k) => kinds.has(k)), `the connection reported every kind of event (${[...kinds].join(", ")})`);
  check(samples.sent === 1 && samples.failed, "the sample run sent once and got a failure report to explain");
  for (const [name, values] of Object.entries(samples.result)) {
    const type = name.endsWith(" | null") ? null : declared.get(name);
    const list = values.filter((v) => v !== undefined);
    const m = list.flatMap((v, i) => (type ? mismatches(v, type, `${name}#${i}`) : v === null ? [] : [`${name}#${i}: not null`]));
    check(list.length > 0 && m.length === 0, `${list.length} ${name} value(s) match the .d.ts${m.length ? ": " + m.slice(0, 5).join("; ") : ""}`);
  }
} finally {
  await browser.close();
}
for (const f of failures) console.log(`failure: ${f}`);
console.log(`e2e types: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
