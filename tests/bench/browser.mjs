// Drives tests/bench in headless Chromium and prints the table (`make bench`).
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"] });
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(url);
  const { results, userAgent } = await page.evaluate(() => window.benchmarks, null, { timeout: 600_000 });
  console.log(`browser: ${userAgent}`);
  console.log("| measure | this module | baseline | ratio |\n|---|---|---|---|");
  const f = (x) => (x == null ? "—" : x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(2));
  for (const r of results) console.log(`| ${r.what} | ${f(r.ours)} ${r.unit} | ${f(r.base)} | ${r.ratio ? r.ratio.toFixed(2) + "×" : "—"} |`);
} finally {
  await browser.close();
}
