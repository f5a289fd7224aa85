// Number flags for every command. yargs' own number type turns `--momentum ''` into 0, a missing
// value into NaN and `-0.5e-3` or `-x` into other flags; these options take the text as typed (the
// next word whatever it looks like) and convert it with parseNumberFlag, which names the flag.
import type { Options } from 'yargs';
import { checkNumberFlag, parseNumberFlag, type NumberBounds } from '../config.js';

/**
 * Parser settings the commands share: numbers stay text until a flag's coerce converts them, and a
 * number flag's value is the next word even when it starts with '-' (`--learning-rate -0.1`).
 */
export const PARSER_CONFIGURATION = {
  'strip-aliased': true,
  'duplicate-arguments-array': false,
  'parse-numbers': false,
  'nargs-eats-options': true,
} as const;

/**
 * A yargs option for a number flag: no yargs type (its conversion is what loses the text), one word
 * of value, converted and checked against `bounds` (the schema checks the run flags' bounds).
 */
export function numberOption(
  flag: string,
  options: Omit<Options, 'type' | 'coerce' | 'nargs'> & { bounds?: NumberBounds } = {},
): Options {
  const { bounds, ...rest } = options;
  return {
    ...rest,
    nargs: 1,
    coerce: (value: unknown) => checkNumberFlag(parseNumberFlag(value, flag), flag, bounds ?? {}),
  };
}
