// The server's log lines: pino's JSON objects (one per line, with the request id as reqId), or the
// same as text for a terminal.
export type LogFormat = 'json' | 'text';

/** A pino JSON line as given (json), or `time reqId method url status ms` / `time level msg` (text). */
export function formatLogLine(line: string, format: LogFormat): string {
  if (format === 'json') return line;
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, reqId, msg, method, url, status, ms, err } = entry;
  const id = reqId === undefined ? '' : ` [${String(reqId)}]`;
  if (msg === 'request') {
    const took = typeof ms === 'number' ? ms.toFixed(1) : String(ms);
    return `${String(time)}${id} ${String(method)} ${String(url)} ${String(status)} ${took} ms`;
  }
  const stack = (err as { stack?: string } | undefined)?.stack;
  return `${String(time)}${id} ${String(level)}: ${String(msg)}${stack ? `\n${stack}` : ''}`;
}
