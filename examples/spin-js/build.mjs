// Bundles src/index.js into build/bundle.js for j2w (@spinframework/build-tools), which
// makes the component. The Spin plugin leaves the component's WIT imports
// (`fermyon:spin/key-value@2.0.0`, ...) to the component instead of bundling them.
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import { SpinEsbuildPlugin } from '@spinframework/build-tools/plugins/esbuild/index.js';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['./src/index.js'],
  outfile: './build/bundle.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  minify: false,
  plugins: [await SpinEsbuildPlugin()],
  logLevel: 'error',
});
