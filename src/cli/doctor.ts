// `doctor`: which compute backends load and work here.
import type { CommandModule } from 'yargs';
import { doctor } from '../training/doctor.js';

async function handler(): Promise<void> {
  const report = await doctor();
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
  builder: {},
  handler,
};
