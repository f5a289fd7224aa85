// `doctor`: which compute backends load and work here.
import type { Argv, CommandModule } from 'yargs';
import { doctor } from '../training/doctor.js';
import { jsonOption } from './flags.js';

async function handler(argv: Record<string, unknown>): Promise<void> {
  const report = await doctor();
  if (argv.json === true) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(`node ${report.node}, ${report.platform}`);
  const { model, batchSize } = report.measured;
  for (const b of report.backends) {
    const step = b.stepMs === undefined ? '' : `; ${model}@${batchSize} step ${b.stepMs.toFixed(1)} ms`;
    const state = b.works ? `works (${b.detail}${step})` : `unavailable: ${b.reason}`;
    console.log(`${b.name.padEnd(15)} ${b.device}  ${state}`);
  }
  console.log(`--device auto uses: ${report.auto ?? 'nothing (no backend works)'}`);
}

export const doctorCommand: CommandModule = {
  command: 'doctor',
  describe: 'List the compute backends: which load and work here, and why the others do not',
  builder: (y: Argv) => jsonOption(y),
  handler,
};
