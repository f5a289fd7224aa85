// Progress for long work: a live bar on a terminal, a few plain lines otherwise (CI logs, pipes).
import cliProgress from 'cli-progress';

export interface Progress {
  /** `done` items of the total; `fields` are shown after the bar (e.g. loss, images/s). */
  update(done: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

export type ProgressFactory = (label: string, total: number, unit: string) => Progress;

/** Does nothing: for library callers and tests that want silence. */
export const silentProgress: ProgressFactory = () => ({ update() {}, stop() {} });

function formatFields(fields: Record<string, string | number> | undefined): string {
  if (!fields) return '';
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${v}`)
    .join('  ');
}

/** A bar with ETA on a TTY; on anything else one line at every 25% so logs stay short. */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): ProgressFactory {
  return (label, total, unit) => {
    if (stream.isTTY) {
      const bar = new cliProgress.SingleBar(
        {
          stream,
          format: `${label} [{bar}] {percentage}% {value}/{total} ${unit} | ETA {eta_formatted} | {fields}`,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { fields: '' });
      return {
        update(done, fields) {
          bar.update(done, { fields: formatFields(fields) });
        },
        stop() {
          bar.stop();
        },
      };
    }
    let nextQuarter = 1;
    return {
      update(done, fields) {
        if (nextQuarter > 4 || total <= 0 || done < (total * nextQuarter) / 4) return;
        stream.write(`${label}: ${done}/${total} ${unit} ${formatFields(fields)}\n`);
        while (nextQuarter <= 4 && done >= (total * nextQuarter) / 4) nextQuarter++;
      },
      stop() {},
    };
  };
}
