// Builds app.js into the visits component with ComponentizeJS's library API.
//
//   node build.mjs <output.wasm> [<deps prefix>] [<wit dir>]
//
// The npm dependencies live outside the repo, under the prefix given as the
// second argument (or $JS_DEPS_PREFIX), where `npm install --prefix` put them.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [output, prefixArg, witArg] = process.argv.slice(2);
const prefix = prefixArg ?? process.env.JS_DEPS_PREFIX;
if (!output || !prefix) {
  console.error('usage: node build.mjs <output.wasm> <deps prefix>  (or set JS_DEPS_PREFIX)');
  process.exit(2);
}

// The package is ESM-only, and node resolves bare specifiers only from the
// importing file's directory upwards, so load it by its path under the prefix.
const pkgDir = resolve(prefix, 'node_modules/@bytecodealliance/componentize-js');
const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8'));
const { componentize } = await import(pathToFileURL(join(pkgDir, pkg.exports.import)).href);

const { component } = await componentize({
  sourcePath: join(here, 'app.js'),
  // The world with its packages beside it, as examples/build.sh assembles them.
  witPath: witArg ?? join(here, 'wit'),
  worldName: 'visits',
});

await mkdir(dirname(resolve(output)), { recursive: true });
await writeFile(output, component);
console.log(`wrote ${output} (${component.length} bytes, componentize-js ${pkg.version})`);
