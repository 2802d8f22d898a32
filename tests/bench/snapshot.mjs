// A new device for a big seller (issue 17): 10,000 visible conversations and 100,000
// messages in the relay's log, then a fresh browser profile signs in — once taking the
// relay's snapshot, once replaying the log from its start (the relay's /snapshot
// answered 404, as an older relay would). Times from "Sign in" until the grid shows
// and until the connection is live, side by side in one run.
// Usage: node tests/bench/snapshot.mjs [conversations] [messages-per-conversation]
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const conversations = Number(process.argv[2] ?? 10_000);
const perConversation = Number(process.argv[3] ?? 10);
const port = 18190;
const base = `http://127.0.0.1:${port}/`;
const work = mkdtempSync(join(tmpdir(), "sms-snapshot-bench-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The demo's configuration with absolute paths, on a database of its own.
const demo = resolve("relay/demo");
const config = readFileSync(join(demo, "relay.toml"), "utf8")
  .replace(/^directory = "(.*)"$/m, (_, p) => `directory = "${join(demo, p)}"`)
  .replace(/^www = "(.*)"$/m, (_, p) => `www = "${resolve(demo, p)}"`);
writeFileSync(join(work, "relay.toml"), config);
const log = openSync(join(work, "relay.log"), "a");
const relay = spawn("./target/release/sms-relay", ["--config", join(work, "relay.toml"), "--bind", `127.0.0.1:${port}`, "--database", join(work, "bench.db")],
  { stdio: ["ignore", log, log] });
try {
  for (let i = 0; i < 100 && !(await fetch(`${base}healthz`).then((r) => r.ok, () => false)); i++) await sleep(100);

  // The customers text Asha's number: each unknown number becomes a lead she owns.
  const total = conversations * perConversation;
  const started = performance.now();
  let next = 0;
  async function worker() {
    while (next < total) {
      const i = next++;
      const customer = `+9190000${String(i % conversations).padStart(5, "0")}`;
      const r = await fetch(`${base}demo/phone/send`, { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ from: customer, to: "+14155550100", body: `Message ${Math.floor(i / conversations)} from ${customer}` }) });
      if (!r.ok) throw new Error(`phone send answered ${r.status}`);
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker));
  const loaded = (performance.now() - started) / 1000;
  console.log(`logged ${total} messages in ${conversations} conversations in ${loaded.toFixed(1)} s (${Math.round(total / loaded)}/s)`);

  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  async function newDevice(label, { snapshot }) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    if (!snapshot) await page.route("**/snapshot", (route) => route.fulfill({ status: 404, body: "" }));
    await page.goto(base);
    await page.getByRole("combobox", { name: "Seller" }).selectOption({ label: "Asha Rao (asha)" });
    const t0 = Date.now();
    await page.getByRole("button", { name: "Sign in" }).click();
    const poll = { timeout: 600_000, polling: 50 };
    await page.waitForFunction(() => [...document.querySelectorAll("#grid tbody tr")].some((tr) => tr.textContent.includes("+9190000")), null, poll);
    const grid = (Date.now() - t0) / 1000;
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("Live"), null, poll);
    const live = (Date.now() - t0) / 1000;
    const rows = await page.evaluate(() => document.querySelectorAll("#grid tbody tr").length);
    await context.close();
    return { label, grid, live, rows };
  }
  const results = [await newDevice("snapshot", { snapshot: true }), await newDevice("log replay from 0", { snapshot: false })];
  await browser.close();
  console.log(`\n| new device (${conversations} conversations, ${total} messages) | grid shows | live (caught up) | rows |`);
  console.log("|---|---|---|---|");
  for (const r of results) console.log(`| ${r.label} | ${r.grid.toFixed(1)} s | ${r.live.toFixed(1)} s | ${r.rows} |`);
  const [s, l] = results;
  console.log(`\nsnapshot ÷ replay: grid ${(s.grid / l.grid).toFixed(2)}×, live ${(s.live / l.live).toFixed(2)}× (target: grid ≤ 5 s)`);
} finally {
  relay.kill("SIGTERM");
}
