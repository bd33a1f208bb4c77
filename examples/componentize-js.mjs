// Builds an example's app.js into a component with ComponentizeJS's library API.
//
//   node componentize-js.mjs <example dir> <world> <output.wasm> [<deps prefix>] [<wit dir>]
//
// The WIT is the example's wit/ unless a <wit dir> is given (examples/build.sh assembles one
// for the visits component, with Wafer's packages beside its world).
//
// The npm dependencies live outside the repo, under the prefix given as the
// fourth argument (or $JS_DEPS_PREFIX), where `npm install --prefix` put them.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [example, world, output, prefixArg, witArg] = process.argv.slice(2);
const here = resolve(example ?? '.');
const prefix = prefixArg ?? process.env.JS_DEPS_PREFIX;
if (!example || !world || !output || !prefix) {
  console.error('usage: node componentize-js.mjs <example dir> <world> <output.wasm> <deps prefix> [<wit dir>]  (or set JS_DEPS_PREFIX)');
  process.exit(2);
}

// The package is ESM-only, and node resolves bare specifiers only from the
// importing file's directory upwards, so load it by its path under the prefix.
const pkgDir = resolve(prefix, 'node_modules/@bytecodealliance/componentize-js');
const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8'));
const { componentize } = await import(pathToFileURL(join(pkgDir, pkg.exports.import)).href);

const { component } = await componentize({
  sourcePath: join(here, 'app.js'),
  witPath: witArg ?? join(here, 'wit'),
  worldName: world,
});

await mkdir(dirname(resolve(output)), { recursive: true });
await writeFile(output, component);
console.log(`wrote ${output} (${component.length} bytes, componentize-js ${pkg.version})`);
