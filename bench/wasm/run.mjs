// bench/bench_heap.py's runner for the 32-bit WebAssembly MicroPython (npm package pinned in
// package.json). Usage: node run.mjs ROOT SCRIPT
// Copies ROOT/han2x_core into the interpreter's in-memory file system (it cannot see the
// host's), runs SCRIPT there with "/app" first on sys.path, then, if SCRIPT defines STEPS,
// calls step(0) .. step(STEPS - 1) and finish(), each as its own call from JavaScript (so
// the collector in each starts from an unwound stack). Exits 1 if anything raised.
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [root, script] = process.argv.slice(2);
const mp = await loadMicroPython({
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copy(from, to) {
  mp.FS.mkdirTree(to);
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    if (entry.name === "__pycache__") continue;
    const src = path.join(from, entry.name);
    if (entry.isDirectory()) copy(src, to + "/" + entry.name);
    else mp.FS.writeFile(to + "/" + entry.name, fs.readFileSync(src));
  }
}

copy(path.join(root, "han2x_core"), "/app/han2x_core");
mp.FS.chdir("/app");
let rc = 0;
try {
  mp.runPython("import sys\nsys.path.insert(0, '/app')\n" + fs.readFileSync(script, "utf8"));
  const steps = mp.globals.get("STEPS");
  if (typeof steps === "number") {
    for (let i = 0; i < steps; i++) mp.runPython("step(" + i + ")");
    mp.runPython("finish()");
  }
} catch (e) {
  if (e.name !== "PythonError") throw e;
  console.error(e.message);
  rc = 1;
}
process.exit(rc);
