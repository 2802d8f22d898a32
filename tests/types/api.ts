// Type-checks the generated `.d.ts` the way a CRM page written in TypeScript uses it
// (`make test` runs `tsc -p tests/types`). Every `@ts-expect-error` below must be an
// error: were a type `any` or a bare `object`, the directive itself would fail.
import init, { SmsClient, normalizePhone, smsSegments, renderTemplate } from "../../www/pkg/sms_module.js";
import type { PaneView, RelayEvent, Directory, ChangeNotice, OutboxEntry, MessageView, FixCode, RouteReason, SyncEvent, SyncStatus } from "../../www/pkg/sms_module.js";

export async function page(): Promise<string[]> {
  await init();
  const client = await SmsClient.open({ dbName: "crm", seller: "asha", defaultRegion: "IN" });
  const directory: Directory = {
    sellers: [{ id: "asha", name: "Asha" }],
    org_numbers: [{ number: "+14155550100", owner: { seller: "asha" } }],
    records: [{ id: "contact:priya", kind: "contact", owner: { seller: "asha" }, phones: ["+919812345678"] }],
  };
  const imported: number = await client.importDirectory(directory);
  const event: RelayEvent = {
    epoch: "e1", id: 1, kind: "inbound", message_sid: "SM1", from: "+919812345678", to: "+14155550100",
    body: "hi", at: "2026-11-27T10:00:00Z", record_id: "contact:priya", rule: "only_match",
  };
  const outcome = await client.ingest(event);
  const lead: string | null = outcome.created_lead;
  const outcomes = await client.ingestMany([event, { kind: "reset" }]);
  // @ts-expect-error an inbound event needs its routing decision
  await client.ingest({ epoch: "e1", id: 2, kind: "inbound", message_sid: "SM2", from: "+1", to: "+1", body: "", at: "" });

  const view: PaneView = await client.openConversation(outcome.conversation_id ?? "", { via: "notification", id: "SM1" });
  const first: MessageView | undefined = view.messages[0];
  const status = first?.delivery?.status;
  // @ts-expect-error delivery statuses are a closed set
  const impossible: typeof status = "teleported";
  const left: number | null = view.composer.limit_left;
  // E5: reasons are codes with parameters, narrowed by their code.
  const route: RouteReason | null = view.route;
  const movedBy: string | undefined = route?.code === "moved_here" ? route.by : undefined;
  // @ts-expect-error only a move says who moved it
  const notMoved = route?.code === "only_match" ? route.by : undefined;
  const fix: FixCode | undefined = first?.failure?.fix;
  // @ts-expect-error fixes are codes the page words, not sentences
  const sentence: FixCode = "Try again later.";
  const after = await client.dispatch({ type: "composer_edited", text: "Hi {{ contact.first_name }}" });
  const blocked: string | null | undefined = after?.composer.blocked;
  // @ts-expect-error a send needs its client reference
  await client.dispatch({ type: "send" });
  // @ts-expect-error unknown pane inputs are refused at compile time
  await client.dispatch({ type: "teleport" });
  await client.openRecord("contact:priya", null, { via: "record_phone", field: "mobile_phone" });
  // @ts-expect-error a record-phone open names its field
  await client.openRecord("contact:priya", null, { via: "record_phone" });

  const queued: OutboxEntry[] = await client.outbox();
  const sub = client.subscribe((change: ChangeNotice) => console.log(change.kind, change.conversation_id));
  // @ts-expect-error listeners receive a change notice, not a number
  client.subscribe((n: number) => n);
  sub.close();
  const synced: PaneView | null = await client.syncPane();
  // E1: the SDK owns the connection; the page only listens.
  const connection = await client.connect({ signIn: async () => fetch("/session", { method: "POST" }) });
  let retryAt = 0;
  connection.subscribe((e: SyncEvent) => {
    if (e.type === "status" && e.status === "reconnecting") retryAt = e.retry_at;
    if (e.type === "progress") retryAt = e.total ?? e.done;
    // @ts-expect-error only a storage problem carries a code
    if (e.type === "status" && e.status === "live") retryAt = e.code;
  });
  const now: SyncStatus = connection.status();
  // @ts-expect-error the relay is a base URL, not a number
  await client.connect({ relay: 8080 });
  connection.disconnect();
  const caught = await client.catchUp({ head: "e1:7" });
  const endedSignedOut: boolean = caught.end === "signed_out";
  const names = (await client.conversations()).map((c) => c.record_name);
  const e164: string = normalizePhone("98123 45678", "IN").e164;
  const segments: number = smsSegments("hello").segments;
  const text: string = renderTemplate("Hi {{ name }}", { name: "Priya" }).text;
  return [String(imported), String(lead), String(outcomes.length), String(left), String(blocked), String(queued.length),
    String(synced?.has_more), String(retryAt), now.status, String(endedSignedOut), String(movedBy), String(notMoved), String(fix), sentence, e164, String(segments), text, String(impossible), ...names];
}
