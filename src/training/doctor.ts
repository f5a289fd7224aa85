// `doctor`: which backends work here, why the others do not, how long a training step of the default
// model takes on each, and so which one `auto` picks.
import { autoChoice, probeBackends, type BackendName, type BackendReport } from '../backends/select.js';
import { parseRunConfig, type ModelName } from '../config.js';
import { measureTrainingStep } from './step.js';

export interface DoctorReport {
  node: string;
  platform: string;
  /** In auto's order of preference. */
  backends: BackendReport[];
  /** The model and batch size each working backend's step was timed with (the defaults). */
  measured: { model: ModelName; batchSize: number };
  auto: BackendName | undefined;
}

export async function doctor(): Promise<DoctorReport> {
  const { model, batchSize } = parseRunConfig({ experimentName: 'doctor', runName: 'doctor' });
  const backends = await probeBackends(undefined, () => measureTrainingStep(model, batchSize));
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    backends,
    measured: { model, batchSize },
    auto: autoChoice(backends)?.name,
  };
}
