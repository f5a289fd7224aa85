// The backends, named once: config.ts's BACKENDS (but `auto`), here in `auto`'s order of
// preference with the device each runs on. select.ts loads them; scripts/bench.ts lists them
// without loading tfjs.
import type { BACKENDS } from '../config.js';

export type BackendName = Exclude<(typeof BACKENDS)[number], 'auto'>;
export type BackendDevice = 'cpu' | 'gpu';

/** Every backend (the compiler checks the list against BACKENDS), most preferred first. */
export const BACKEND_DEVICES = {
  'tensorflow-gpu': 'gpu',
  webgpu: 'gpu',
  tensorflow: 'cpu',
  native: 'cpu',
  wasm: 'cpu',
  cpu: 'cpu',
} as const satisfies Record<BackendName, BackendDevice>;

/** The backends in `auto`'s order of preference. */
// Cast: Object.keys types its keys as any string; these are BACKEND_DEVICES' own.
export const BACKEND_NAMES = Object.keys(BACKEND_DEVICES) as BackendName[];
