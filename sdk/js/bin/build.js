#!/usr/bin/env node
// cdc-transform-build PLUGIN.js -o OUT.wasm [--wit DIR]
//
// Builds a cdc-host plugin component from a module whose default export is a transform class:
// generates the entry (the `transformer` export and the log import), bundles it with the SDK
// (esbuild), and componentizes it with componentize-js (SpiderMonkey). The component offers no
// wasi:http (`-d http fetch-event`): the host gives plugins an empty WASI context.
import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = dirname(dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
let input, out;
let wit = process.env.CDC_WIT_DIR || join(sdk, "..", "..", "wit");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "-o" || args[i] === "--out") out = args[++i];
  else if (args[i] === "--wit") wit = args[++i];
  else input = args[i];
}
if (!input || !out) {
  console.error("usage: cdc-transform-build PLUGIN.js -o OUT.wasm [--wit DIR]");
  process.exit(2);
}

const tmp = mkdtempSync(join(tmpdir(), "cdc-transform-build-"));
try {
  const entry = join(tmp, "entry.js");
  writeFileSync(
    entry,
    `import { write } from "cdc:transform/log@0.1.0";
import { exportTransform, setLogWriter } from ${JSON.stringify(join(sdk, "src", "index.js"))};
import Plugin from ${JSON.stringify(resolve(input))};
setLogWriter(write);
export const transformer = exportTransform(Plugin);
`,
  );
  const bundle = join(tmp, "bundle.js");
  await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    external: ["cdc:transform/*"],
    outfile: bundle,
    logLevel: "warning",
    alias: { "cdc-transform": join(sdk, "src", "index.js") },
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: resolve(wit),
    worldName: "transform",
    disableFeatures: ["http", "fetch-event"],
  });
  writeFileSync(out, component);
  console.log(`${out}: ${component.length} bytes`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
