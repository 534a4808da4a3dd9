/**
 * Values the proxy reads from a head's raw `[name, value, ...]` list, comparing names in any case
 * without lower-casing them (isName).
 */

/**
 * Whether the header name `name` is `lower` (lower-case letters and '-') in any case. Compares
 * character codes with the case bit set, so no lower-cased copy is made: HTTP names are tokens,
 * and the only other characters this equates are controls llhttp refuses in a name.
 */
export function isName(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** The one Content-Length of a response without Transfer-Encoding, or undefined. */
export function contentLength(headers: readonly string[]): number | undefined {
  let found: number | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] ?? '';
    if (isName(name, 'transfer-encoding')) return undefined;
    if (!isName(name, 'content-length')) continue;
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
    if (isName(name, 'keep-alive')) return headers[i + 1];
  }
  return undefined;
}

/** The `timeout=N` of a Keep-Alive value, in ms. */
export function keepAliveMs(value: string): number | undefined {
  const seconds = /timeout=(\d+)/i.exec(value);
  return seconds?.[1] === undefined ? undefined : Number(seconds[1]) * 1_000;
}
