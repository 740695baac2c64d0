// Runs a wasm32-wasip1 command module in node's WASI (V8, the engine Envoy embeds):
// `node run.mjs MODULE.wasm [ARG...]`; WASI_DIR=/abs/dir gives the module that directory.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
const dir = process.env.WASI_DIR;
const wasi = new WASI({
  version: "preview1",
  args: ["bench", ...process.argv.slice(3)],
  env: {},
  preopens: dir ? { [dir]: dir } : {},
});
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
wasi.start(instance);
