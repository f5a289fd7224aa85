// Progress for long work: a live bar on a terminal, a few plain lines otherwise (CI logs, pipes).
// Lines printed while a bar is live (log lines, Ctrl-C notices) first clear the bar's line, and the
// bar redraws itself below them, so the two never run into each other.
import cliProgress from 'cli-progress';

export interface Progress {
  /** `done` items of the total; `fields` are shown after the bar (e.g. loss, images/s). */
  update(done: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

export type ProgressFactory = (label: string, total: number, unit: string) => Progress;

/** Does nothing: for library callers and tests that want silence. */
export const silentProgress: ProgressFactory = () => ({ update() {}, stop() {} });

/** The live terminal bars, by the stream each draws on. */
const liveBars = new Set<{ stream: NodeJS.WriteStream }>();

/** Erases the line of every live terminal bar (they redraw within a tenth of a second). */
export function clearProgressLine(): void {
  for (const { stream } of liveBars) stream.write('\r\x1b[2K');
}

/** Writes one line to `stream` (stderr by default), on a line of its own even while a bar is live. */
export function notice(text: string, stream: NodeJS.WriteStream = process.stderr): void {
  clearProgressLine();
  stream.write(`${text}\n`);
}

function formatFields(fields: Record<string, string | number> | undefined): string {
  if (!fields) return '';
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${v}`)
    .join('  ');
}

/**
 * The stream without cursor save/restore: cli-progress saves the cursor when a bar starts and jumps
 * back there when it stops, so whatever was printed meanwhile (a notice, a log line) was overwritten.
 */
function withoutCursorJumps(stream: NodeJS.WriteStream): NodeJS.WriteStream {
  return new Proxy(stream, {
    get(target, property) {
      if (property === 'write') {
        return (chunk: unknown, ...rest: unknown[]) =>
          chunk === '\x1b7' || chunk === '\x1b8'
            ? true
            : (target.write as (...args: unknown[]) => boolean)(chunk, ...rest);
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** ETA while it is not known yet: cli-progress would print 'NULL' cut to two characters ("LLs"). */
const formatTime: cliProgress.Options['formatTime'] = (t, options, roundTo) =>
  typeof t === 'number' && Number.isFinite(t) ? cliProgress.Format.TimeFormat(t, options, roundTo) : '--';

/** A bar with ETA on a TTY; on anything else one line at every 25% so logs stay short. */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): ProgressFactory {
  return (label, total, unit) => {
    if (stream.isTTY) {
      const bar = new cliProgress.SingleBar(
        {
          stream: withoutCursorJumps(stream),
          format: `${label} [{bar}] {percentage}% {value}/{total} ${unit} | ETA {eta_formatted} | {fields}`,
          formatTime,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 50,
          // Redraw even when nothing changed, so a line cleared for a message comes back.
          forceRedraw: true,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { fields: '' });
      const live = { stream };
      liveBars.add(live);
      return {
        update(done, fields) {
          bar.update(done, { fields: formatFields(fields) });
        },
        stop() {
          if (!liveBars.delete(live)) return;
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
