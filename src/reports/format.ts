// How numbers read in the terminal, the same in every command: 0.8123 -> "81.23%", 2 -> "2 threads".

/** A fraction as a percentage with two decimals; "-" when there is none (null, NaN: nothing measured). */
export function percent(fraction: number | null): string {
  return fraction === null || !Number.isFinite(fraction) ? '-' : `${(fraction * 100).toFixed(2)}%`;
}

/** `count word`, with an "s" unless the count is 1: "1 thread", "2 threads", "0 images". */
export function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}
