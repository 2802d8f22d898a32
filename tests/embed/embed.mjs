// The npm package as a CRM developer would use it (E6, E1, E4): install the packed
// tarball into a fresh folder with Vite from npm, build a minimal page that imports the
// SDK by package name, serve it from a demo relay (same origin, the relay's strict
// CSP), and check in Chromium that it catches up, goes live, shows a live inbound
// message, and survives a relay killed mid-burst with nothing lost or doubled.
// Usage: node tests/embed/embed.mjs <package.tgz> [port]
import { chromium } from "playwright-core";
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const tarball = resolve(process.argv[2] ?? "");
const port = Number(process.argv[3] ?? 18183);
const base = `http://127.0.0.1:${port}/`;
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const work = mkdtempSync(join(tmpdir(), "sms-embed-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let passed = 0;
const failures = [];
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (ok) passed++; else failures.push(what);
}

// ---- a CRM project: the package from its tarball, Vite from npm, the minimal page ----
writeFileSync(join(work, "package.json"), JSON.stringify({
  name: "crm-embed-check", private: true, type: "module",
  dependencies: { "@acme/sms-module": `file:${tarball}` },
  devDependencies: { vite: "^8.0.0" },
}, null, 2));
execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: work, stdio: "inherit" });
cpSync(join(here, "page"), work, { recursive: true });
execFileSync("npx", ["vite", "build", "--outDir", "dist", "--emptyOutDir", "--logLevel", "warn"], { cwd: work, stdio: "inherit" });
const installed = JSON.parse(readFileSync(join(work, "node_modules/@acme/sms-module/package.json"), "utf8"));
check(installed.version === readFileSync(join(root, "Cargo.toml"), "utf8").match(/\[package\][^[]*?\nversion = "([^"]*)"/s)[1],
  `the installed package has the crate's version (${installed.version})`);

// ---- the relay serves the built page (same origin as its API) ----
const demo = readFileSync(join(root, "relay/demo/relay.toml"), "utf8")
  .replace(/^directory = .*$/m, `directory = ${JSON.stringify(join(root, "relay/demo/directory.json"))}`)
  .replace(/^www = .*$/m, `www = ${JSON.stringify(join(work, "dist"))}`)
  .replace(/^database = .*$/m, `database = ${JSON.stringify(join(work, "relay.db"))}`);
writeFileSync(join(work, "relay.toml"), demo);
let relay;
async function startRelay() {
  const log = openSync(join(work, "relay.log"), "a");
  relay = spawn(join(root, "target/debug/sms-relay"), ["--config", join(work, "relay.toml"), "--bind", `127.0.0.1:${port}`], { stdio: ["ignore", log, log] });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${base}healthz`).then((r) => r.ok, () => false)) return;
    await sleep(100);
  }
  throw new Error(`relay did not start (log: ${join(work, "relay.log")})`);
}
async function killRelay() {
  const exited = new Promise((r) => relay.once("exit", r));
  relay.kill("SIGKILL");
  await exited;
}
async function customerTexts(from, body) {
  const r = await fetch(`${base}demo/phone/send`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ from, to: "+14155550100", body }) });
  if (!r.ok) throw new Error(`phone send answered ${r.status}`);
}

await startRelay();
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
try {
  // A long catch-up: the log holds 150 messages before this device first connects.
  for (let i = 1; i <= 150; i++) await customerTexts(`+91 95556 ${String(10000 + i)}`, `before ${i}`);
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  // Connection errors while the relay is down are the browser's own logging; a script
  // error or a blocked resource is not.
  page.on("console", (m) => { if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  const response = await page.goto(`${base}?seller=asha`);
  check((response.headers()["content-security-policy"] ?? "").includes("script-src 'self' 'wasm-unsafe-eval'"), "the page is served under the strict policy");
  const live = () => document.getElementById("status").textContent === "live";
  check(await page.waitForFunction(live, null, { timeout: 60000 }).then(() => true, () => false), "the embedded SDK goes live");
  const events = await page.$$eval("#events li", (lis) => lis.map((li) => JSON.parse(li.textContent)));
  const statuses = events.filter((e) => e.type === "status").map((e) => e.status);
  check(statuses[0] === "connecting" && statuses.indexOf("catching_up") > 0 && statuses.at(-1) === "live"
    && statuses.indexOf("catching_up") < statuses.lastIndexOf("live"), `status: connecting → catching up → live (${statuses.join(", ")})`);
  const at = (pred) => events.findIndex(pred);
  const catchUp = events.map((e, i) => [e, i]).filter(([e]) => e.type === "progress" && e.phase === "catch_up");
  const firstCatching = at((e) => e.type === "status" && e.status === "catching_up");
  const firstLive = at((e) => e.type === "status" && e.status === "live");
  check(catchUp.length > 0 && catchUp.every(([, i]) => i > firstCatching && i < firstLive), `catch-up progress comes between "catching up" and "live" (${catchUp.length} events)`);
  check(catchUp.every(([e], k) => k === 0 || e.done >= catchUp[k - 1][0].done), "its `done` never goes back");
  const last = catchUp.at(-1)?.[0];
  check(last && last.total != null && last.done === last.total, `the last progress is complete (${last?.done}/${last?.total})`);
  const directory = events.filter((e) => e.type === "progress" && e.phase === "directory");
  check(directory.length > 0 && directory.at(-1).done === directory.at(-1).total && at((e) => e.phase === "directory") < firstCatching,
    "a new device imports the directory first, with progress");
  check(await page.waitForFunction(() => [...document.querySelectorAll("#inbox li")].filter((li) => / before \d+ \(1\)$/.test(li.textContent)).length === 150, null, { timeout: 20000 }).then(() => true, () => false),
    "all 150 earlier conversations are listed");

  await customerTexts("+91 95556 20001", "hello, live");
  check(await page.waitForFunction(() => document.getElementById("inbox").textContent.includes("hello, live"), null, { timeout: 15000 }).then(() => true, () => false),
    "a live inbound message shows");

  // A relay killed mid-burst (sends still in flight), then restarted on the same
  // database: every message the relay accepted shows once (its conversation's unread
  // count is 1), none twice; the rest were refused to the phone, not lost by the SDK.
  const burst = Array.from({ length: 20 }, (_, i) => customerTexts(`+91 95556 ${30001 + i}`, `burst ${i + 1}`).then(() => i + 1));
  await Promise.race(burst);
  await killRelay();
  const accepted = (await Promise.allSettled(burst)).filter((r) => r.status === "fulfilled").map((r) => r.value);
  check(await page.waitForFunction(() => document.getElementById("status").textContent === "reconnecting", null, { timeout: 15000 }).then(() => true, () => false),
    "the SDK says it is reconnecting");
  await startRelay();
  for (let i = 21; i <= 25; i++) await customerTexts(`+91 95556 ${30000 + i}`, `burst ${i}`);
  const wanted = [...accepted, 21, 22, 23, 24, 25];
  check(await page.waitForFunction((w) => w.every((i) => [...document.querySelectorAll("#inbox li")].some((li) => li.textContent.endsWith(`burst ${i} (1)`))),
    wanted, { timeout: 60000 }).then(() => true, () => false),
  `after the restart it catches up by itself: the ${wanted.length} accepted messages show, once each`);
  const shown = await page.$$eval("#inbox li", (lis) => lis.map((li) => li.textContent).filter((t) => /burst \d+ \(\d+\)$/.test(t)));
  check(shown.every((t) => t.endsWith("(1)")) && new Set(shown).size === shown.length, `no message doubled (${shown.length} burst conversations)`);
  check(problems.length === 0, `no errors in the console${problems.length ? `: ${problems.join(" | ")}` : ""}`);
} finally {
  await browser.close();
  await killRelay().catch(() => {});
}
console.log(`embed: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
