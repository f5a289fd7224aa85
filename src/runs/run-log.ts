// The run's log: lines go to the caller at once and into train.log; lines logged before the run
// folder exists (backend, data) are held and written first when the file is opened.
import { createWriteStream, type WriteStream } from 'node:fs';

export class RunLog {
  private file: WriteStream | undefined;
  private readonly pending: string[] = [];

  constructor(private readonly echo?: (line: string) => void) {}

  readonly line = (text: string): void => {
    this.echo?.(text);
    if (this.file) this.file.write(text + '\n');
    else this.pending.push(text);
  };

  /** `append`: a resumed run adds to the log it already has. */
  open(path: string, append = false): void {
    this.file = createWriteStream(path, { flags: append ? 'a' : 'w' });
    for (const text of this.pending.splice(0)) this.file.write(text + '\n');
  }

  close(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    return new Promise((resolve) => (file && !file.closed ? file.end(() => resolve()) : resolve()));
  }
}
