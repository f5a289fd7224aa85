// How numbers read in the terminal, the same in every command: 0.8123 -> "81.23%", 2 -> "2 threads".

/** A fraction as a percentage with two decimals; "-" when there is none (null, NaN: nothing measured). */
export function percent(fraction: number | null): string {
  return fraction === null || !Number.isFinite(fraction) ? '-' : `${(fraction * 100).toFixed(2)}%`;
}

/** `count word`, with an "s" unless the count is 1: "1 thread", "2 threads", "0 images". */
export function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/**
 * Rows as aligned text columns, two spaces apart: the first `leftColumns` left-aligned (names), the
 * rest right-aligned (numbers).
 */
export function textTable(header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((v, i) => (i < leftColumns ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
