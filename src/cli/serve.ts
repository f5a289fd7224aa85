// `serve <run>`: the model over HTTP until SIGTERM or Ctrl-C.
import type { Argv, CommandModule } from 'yargs';
import { flagSpecs, parseOptions } from '../config.js';
import { serveOptionsSchema } from '../model-options.js';
import { EXIT } from '../errors.js';
import { plural } from '../reports/format.js';
import { serve } from '../serving/serve.js';
import { addModelCommandFlags, EXIT_CODES, givenFlags, runPositional } from './flags.js';
import { handleSignals } from './signals.js';

/** Signals closer together than this are one Ctrl-C delivered twice (see SignalReactions). */
const DUPLICATE_SIGNAL_MS = 500;

function builder(y: Argv): Argv {
  return addModelCommandFlags(runPositional(y), serveOptionsSchema)
    .option('quiet', { type: 'boolean', describe: 'No line per request on stdout' })
    .example(
      '$0 serve baseline/run-1',
      'http://127.0.0.1:8080: POST /predict, GET /healthz, /metrics, /model, /docs, /openapi.json',
    )
    .example(
      '$0 serve baseline/run-1 --host 0.0.0.0 --cors https://app.example.com --auth-token-file token.txt',
      'Behind a load balancer: browsers from one origin, /predict and /model need the token',
    )
    .example(
      'curl -s --data-binary @cat.jpg -H "Content-Type: image/jpeg" localhost:8080/predict',
      'Classify an image',
    )
    .epilogue('SIGTERM or Ctrl-C stops accepting connections, finishes the requests in flight and exits 0.')
    .epilogue(EXIT_CODES);
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const options = parseOptions(serveOptionsSchema, givenFlags(argv, flagSpecs(serveOptionsSchema)));
  const server = await serve(String(argv.run), {
    ...options,
    log: argv.quiet === true ? undefined : (line) => console.log(line),
  });
  // The server's own lines in the format of its request log, so a log collector reads them all.
  const say = (msg: string) =>
    console.log(
      options.logFormat === 'json'
        ? JSON.stringify({ level: 'info', time: new Date().toISOString(), msg })
        : msg,
    );
  const { model } = server;
  // Signals are handled from here on: the first drains, a second one while draining quits at once.
  const signals = handleSignals({
    first: () => {},
    second: () => process.exit(EXIT.failed),
    sameWithinMs: DUPLICATE_SIGNAL_MS,
  });
  try {
    say(
      `model ${model.runId} (${model.manifest.config.model}, ${model.classNames.length} classes) loaded in ` +
        `${model.loadSeconds.toFixed(2)} s on ${model.backend.name} (${plural(model.backend.threads, 'thread')})`,
    );
    say(
      `listening on ${server.url}: POST /predict, GET /healthz, /metrics, /model, /docs, /openapi.json` +
        (server.auth ? ' (/predict and /model need the bearer token)' : ''),
    );
    const signal = await signals.first;
    say(`${signal}: no new connections; finishing the requests in flight`);
    await server.close();
    say('stopped');
    // Nothing should be left to keep Node running; should anything be, do not wait for SIGKILL.
    setTimeout(() => process.exit(), 2000).unref();
  } finally {
    signals.done();
  }
}

export const serveCommand: CommandModule = {
  command: 'serve <run>',
  describe: 'Serve the model over HTTP: POST /predict, GET /healthz, /metrics, /model, /docs',
  builder,
  handler,
};
