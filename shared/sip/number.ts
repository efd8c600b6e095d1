/**
 * Phone-number matching for queries like "calls to +1 (555) 123-4567". Numbers
 * appear in SIP in many shapes (+15551234567, 0015551234567, 5551234567,
 * 1-555-123-4567;npdi), so matching is on digits only, by suffix.
 */

/** Minimum query length: shorter suffixes would match a large share of all calls. */
export const MIN_QUERY_DIGITS = 4;

/** The digits of a URI user part, in order; '' for null. */
export function sipDigits(user: string | null): string {
  if (user === null) return '';
  let out = '';
  let runStart = -1;
  // Copies runs of digits in one slice each: most users are all digits.
  for (let i = 0; i < user.length; i++) {
    const c = user.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (runStart < 0) runStart = i;
    } else if (runStart >= 0) {
      out += user.slice(runStart, i);
      runStart = -1;
    }
  }
  if (runStart >= 0) out += runStart === 0 ? user : user.slice(runStart);
  return out;
}

/**
 * True when userDigits ends with queryDigits. A query shorter than
 * MIN_QUERY_DIGITS never matches (normalizeNumberQuery rejects those up front;
 * this guards callers that skip it).
 */
export function numberMatches(userDigits: string, queryDigits: string): boolean {
  if (queryDigits.length < MIN_QUERY_DIGITS) return false;
  return userDigits.endsWith(queryDigits);
}

/**
 * Turns user input such as "+1 (555) 123-4567" into "15551234567". Throws when
 * anything but digits and the usual visual separators is present, or when
 * fewer than MIN_QUERY_DIGITS digits remain.
 */
export function normalizeNumberQuery(input: string): string {
  let digits = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    const c = input.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      digits += ch;
    } else if (ch === '+' || ch === ' ' || ch === '\t' || ch === '-' || ch === '.' || ch === '(' || ch === ')') {
      continue;
    } else {
      throw new Error(
        `invalid number query ${JSON.stringify(input)}: unexpected character ${JSON.stringify(ch)} at position ${i}; ` +
          `only digits, '+', spaces, '-', '.', '(' and ')' are allowed`,
      );
    }
  }
  if (digits.length < MIN_QUERY_DIGITS) {
    throw new Error(
      `invalid number query ${JSON.stringify(input)}: it has ${digits.length} digit(s), ` +
        `at least ${MIN_QUERY_DIGITS} are needed to match numbers by suffix`,
    );
  }
  return digits;
}
