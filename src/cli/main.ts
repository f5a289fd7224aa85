#!/usr/bin/env node
// The CLI (PROGRAM): its commands (one file each, their flags derived from the schemas in
// src/config.ts) and the one error handler.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT, firstLine, PROGRAM, UserError } from '../errors.js';
import { doctorCommand } from './doctor.js';
import { evaluateCommand } from './evaluate.js';
import { PARSER_CONFIGURATION } from './flags.js';
import { predictCommand } from './predict.js';
import { reproduceCommand } from './reproduce.js';
import { runsCommand } from './runs.js';
import { serveCommand } from './serve.js';
import { sweepCommand } from './sweep.js';
import { trainCommand } from './train.js';
import { verifyCommand } from './verify.js';

function fail(message: string, code: number): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(code);
}

export async function main(args: string[]): Promise<void> {
  const parser = yargs(args)
    .scriptName(PROGRAM)
    .usage('$0 [options]: train an image classifier and write experiments/<experiment>/<run>/')
    .command(trainCommand)
    .command(reproduceCommand)
    .command(verifyCommand)
    .command(sweepCommand)
    .command(runsCommand)
    .command(evaluateCommand)
    .command(predictCommand)
    .command(serveCommand)
    .command(doctorCommand)
    // `eval "$(image-classifier-trainer completion)"` in ~/.bashrc (or ~/.zshrc): commands and flags.
    .completion('completion', 'Print a bash/zsh completion script (add its output to ~/.bashrc or ~/.zshrc)')
    .strict()
    .parserConfiguration(PARSER_CONFIGURATION)
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .help()
    .alias('help', 'h')
    .version()
    .fail((message, error) => {
      // yargs' own errors (YError: a flag's coerce refused its value) are bad input too.
      if (error && error.name !== 'YError') throw error;
      fail(message, EXIT.badInput);
    });
  await parser.parseAsync();
}

/** The one error handler: a UserError's message and exit code; anything else, its first line and 1. */
function handleError(error: unknown): never {
  // A UserError's message is written for the terminal; anything else may carry a stack-like tail.
  if (error instanceof UserError) fail(error.message, error.exitCode);
  fail(firstLine(error), EXIT.failed);
}

await main(hideBin(process.argv)).catch(handleError);
