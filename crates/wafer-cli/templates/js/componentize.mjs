// Builds app.js into {{name}}.wasm with ComponentizeJS's library API, against the WIT world
// in wit/ (wasi:http/proxy at the WASI version the ComponentizeJS engine is built for).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const { component } = await componentize({
  sourcePath: 'app.js',
  witPath: 'wit',
  worldName: 'hello',
});
await writeFile('{{name}}.wasm', component);
console.log(`wrote {{name}}.wasm (${component.length} bytes)`);
