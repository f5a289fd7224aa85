// Runs the built CLI (dist/, as users get it), or any node script, in a child process.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const CLI = resolve(import.meta.dirname, '../../dist/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Added to this process's environment (or, with `replaceEnv`, the whole environment). */
  env?: NodeJS.ProcessEnv;
  replaceEnv?: boolean;
}

export function runCli(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return runNode([CLI, ...args], options);
}

/** Runs `node <args>` to completion, collecting its output. */
export function runNode(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return runCommand(process.execPath, args, options);
}

/** Runs any command to completion, collecting its output. */
export function runCommand(command: string, args: string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.replaceEnv ? options.env : { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

export function tempFolder(prefix = 'ic-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
