/**
 * Values the proxy reads from a response head's raw `[name, value, ...]` list. Each looks only at
 * names of the length it wants, so most names are never lower-cased.
 */

/** The one Content-Length of a response without Transfer-Encoding, or undefined. */
export function contentLength(headers: readonly string[]): number | undefined {
  let found: number | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] ?? '';
    // Only these two names matter: others are not lower-cased.
    if (name.length !== 14 && name.length !== 17) continue;
    const lower = name.toLowerCase();
    if (lower === 'transfer-encoding') return undefined;
    if (lower !== 'content-length') continue;
    if (found !== undefined) return undefined; // repeated
    found = digits(headers[i + 1] ?? '');
    if (found === undefined) return undefined;
  }
  return found;
}

/** A value of 1 to 15 decimal digits (blanks around them allowed), or undefined. */
function digits(value: string): number | undefined {
  let start = 0;
  let end = value.length;
  while (start < end && (value.charCodeAt(start) === 32 || value.charCodeAt(start) === 9)) start++;
  while (end > start && (value.charCodeAt(end - 1) === 32 || value.charCodeAt(end - 1) === 9))
    end--;
  if (end === start || end - start > 15) return undefined;
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = value.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return undefined;
    n = n * 10 + c;
  }
  return n;
}

/** The child's `Keep-Alive` header's value, when it sent one. */
export function keepAliveValue(headers: readonly string[]): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] ?? '';
    if (name.length === 10 && name.toLowerCase() === 'keep-alive') return headers[i + 1];
  }
  return undefined;
}

/** The `timeout=N` of a Keep-Alive value, in ms. */
export function keepAliveMs(value: string): number | undefined {
  const seconds = /timeout=(\d+)/i.exec(value);
  return seconds?.[1] === undefined ? undefined : Number(seconds[1]) * 1_000;
}
