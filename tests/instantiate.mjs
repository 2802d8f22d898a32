// Instantiates the optimised module under Node with stub imports: a size figure is
// only worth something for a module that still loads (see provider facts).
import { readFileSync } from "node:fs";

const bytes = readFileSync(process.argv[2]);
const module = await WebAssembly.compile(bytes);
const imports = {};
for (const { module: m, name, kind } of WebAssembly.Module.imports(module)) {
  imports[m] ??= {};
  imports[m][name] = kind === "function" ? () => {} : undefined;
}
await WebAssembly.instantiate(module, imports);
console.log(`instantiate: ok (${WebAssembly.Module.exports(module).length} exports)`);
