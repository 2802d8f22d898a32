// Writes the npm package's manifest beside the built module (`make package`): name,
// version and description from Cargo.toml, ES module exports, the typed API, and only
// the files a page needs.
import { readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
const cargo = readFileSync("Cargo.toml", "utf8");
const field = (name) => cargo.match(new RegExp(`\\[package\\][^\\[]*?\\n${name} = "([^"]*)"`, "s"))?.[1];
const manifest = {
  name: "@acme/sms-module",
  version: field("version"),
  description: field("description"),
  license: "MIT OR Apache-2.0",
  type: "module",
  main: "./sms_module.js",
  module: "./sms_module.js",
  types: "./sms_module.d.ts",
  exports: {
    ".": { types: "./sms_module.d.ts", import: "./sms_module.js", default: "./sms_module.js" },
    "./sms_module_bg.wasm": "./sms_module_bg.wasm",
    "./package.json": "./package.json",
  },
  files: ["sms_module.js", "sms_module.d.ts", "sms_module_bg.wasm", "sms_module_bg.wasm.d.ts", "README.md"],
  keywords: ["sms", "crm", "webassembly", "indexeddb"],
};
if (!manifest.version) throw new Error("no version in Cargo.toml");
writeFileSync(join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
copyFileSync("tests/embed/PACKAGE.md", join(dir, "README.md"));
console.log(`package: ${manifest.name}@${manifest.version} in ${dir}`);
