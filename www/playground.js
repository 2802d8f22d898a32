// Playground shell: reads inputs, calls the WASM core, writes results as text only.
import init, { normalizePhone, renderTemplate, smsSegments, routeInbound } from "./pkg/sms_module.js";

const $ = (id) => document.getElementById(id);

function show(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function describe(err) {
  return `${err.code ?? "error"}: ${err.message}`;
}

function updatePhone() {
  try {
    show($("phone-out"), normalizePhone($("phone").value, $("region").value || undefined).e164);
  } catch (err) {
    show($("phone-out"), `${describe(err)} (${err.reason ?? ""})`, true);
  }
}

function updateTemplate() {
  let data;
  try {
    data = JSON.parse($("data").value || "{}");
  } catch (err) {
    show($("tpl-out"), `record data is not JSON: ${err.message}`, true);
    return;
  }
  try {
    const { text, missing } = renderTemplate($("template").value, data);
    show($("tpl-out"), text);
    show($("tpl-missing"), missing.length ? `No value for: ${missing.join(", ")}` : "Every placeholder is filled.", missing.length > 0);
    const s = smsSegments(text);
    const why = s.ucs2_chars.length ? ` — UCS-2 because of ${s.ucs2_chars.join(" ")}` : "";
    show($("segments"), `${s.encoding}: ${s.units} units, ${s.segments} segment(s), ${s.remaining} left in the last${why}${s.too_long ? " — over the 1,600 character limit" : ""}`, s.too_long);
  } catch (err) {
    show($("tpl-out"), `${describe(err)} at byte ${err.offset}`, true);
  }
}

function updateRoute() {
  try {
    const d = routeInbound(JSON.parse($("route").value));
    show($("route-out"), d.new_lead ? `new lead ${d.new_lead.id} (rule: ${d.rule})` : `${d.record_id} (rule: ${d.rule})`);
  } catch (err) {
    show($("route-out"), err.code ? describe(err) : `not JSON: ${err.message}`, true);
  }
}

const sample = {
  inbound: { from: "+919812345678", to: "+14155550100" },
  default_region: "IN",
  org_numbers: [{ number: "+14155550100", owner: { seller: "asha" } }],
  teams: [{ id: "north", members: ["asha", "ravi"] }],
  records: [
    { id: "contact:1", kind: "contact", owner: { seller: "ravi" }, active: true, updated_at: "2024-05-01T10:00:00Z", phones: ["098123 45678"] },
    { id: "lead:7", kind: "lead", owner: { seller: "asha" }, active: true, updated_at: "2024-05-02T10:00:00+05:30", phones: ["+91 98123 45678"] },
  ],
  conversations: [],
};

await init();
$("route").value = JSON.stringify(sample, null, 2);
for (const [ids, fn] of [[["phone", "region"], updatePhone], [["template", "data"], updateTemplate], [["route"], updateRoute]]) {
  for (const id of ids) $(id).addEventListener("input", fn);
  fn();
}
