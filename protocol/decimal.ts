// Numbers as people type them on a command line or in an environment variable: plain decimal
// digits with an optional leading minus. JavaScript's Number() also takes '0x10', '1e9',
// ' 7 ', '0b11' and '' (as 0), each of which on a command line is more likely a slip than a
// wish; a flag that reads one of them as a number would act on a value nobody typed.

const DECIMAL_INTEGER = /^-?\d+$/;

/** The integer `text` spells in decimal, or undefined when it is not one (or not a safe integer). */
export function parseDecimalInteger(text: string): number | undefined {
  if (!DECIMAL_INTEGER.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}
