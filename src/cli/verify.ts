// `verify <run>`: check a run's files against the hashes in its run.json.
import type { Argv, CommandModule } from 'yargs';
import { EXIT } from '../errors.js';
import { verifyRun } from '../runs/verify.js';
import { experimentsFolderOption, EXIT_CODES, jsonOption, runPositional } from './flags.js';

function builder(y: Argv): Argv {
  return jsonOption(runPositional(experimentsFolderOption(y))).epilogue(EXIT_CODES);
}

async function handler(argv: Record<string, unknown>): Promise<void> {
  const report = await verifyRun(String(argv.run), argv.experimentsFolder as string);
  if (!report.ok) process.exitCode = EXIT.differs;
  if (argv.json === true) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  for (const f of report.files) console.log(`${f.status.padEnd(8)} ${f.file}`);
  const bad = report.files.filter((f) => f.status !== 'ok');
  console.log(
    bad.length === 0
      ? `${report.path}: all ${report.files.length} files match run.json`
      : `${report.path}: ${bad.length} of ${report.files.length} files changed or missing since the run was written`,
  );
}

export const verifyCommand: CommandModule = {
  command: 'verify <run>',
  describe: `Check a run's files against the sha256 hashes in its run.json: exit 0 when unchanged, ${EXIT.differs} when not`,
  builder,
  handler,
};
