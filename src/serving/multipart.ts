// A small multipart/form-data parser (RFC 7578, RFC 2046 section 5.1) for bodies already read into
// memory (the server caps their size first), so it can work on one Buffer with indexOf and no copies.
// No multipart library is installed, and the server needs only this much.

export interface MultipartPart {
  /** The form field's name (Content-Disposition `name`), or null. */
  name: string | null;
  /** The file name (`filename*` preferred over `filename`), or null for a plain field. */
  filename: string | null;
  /** The part's Content-Type, lower-cased and without parameters, or null when absent. */
  contentType: string | null;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The part's bytes (a view into the body). */
  data: Buffer;
}

export class MultipartError extends Error {
  override name = 'MultipartError';
}

export interface MultipartLimits {
  /** Most parts accepted (default 1000). */
  maxParts?: number;
  /** Most bytes of one part's header block (default 16 KiB). */
  maxHeaderBytes?: number;
}

export interface ContentType {
  /** `type/subtype`, lower-cased. */
  type: string;
  /** Parameters, names lower-cased, values unquoted. */
  params: Record<string, string>;
}

/** Parses `name=value; name="quoted \"value\""` parameters starting at `from`. */
function parseParams(text: string, from: number): Record<string, string> {
  const params: Record<string, string> = {};
  let i = from;
  while (i < text.length) {
    while (i < text.length && (text[i] === ';' || text[i] === ' ' || text[i] === '\t')) i++;
    if (i >= text.length) break;
    let end = i;
    while (end < text.length && text[end] !== '=' && text[end] !== ';') end++;
    const name = text.slice(i, end).trim().toLowerCase();
    i = end;
    let value = '';
    if (text[i] === '=') {
      i++;
      while (text[i] === ' ' || text[i] === '\t') i++;
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          // A backslash quotes the next character (quoted-pair).
          if (text[i] === '\\' && i + 1 < text.length) i++;
          value += text[i];
          i++;
        }
        i++; // the closing quote
        while (i < text.length && text[i] !== ';') i++;
      } else {
        end = i;
        while (end < text.length && text[end] !== ';') end++;
        value = text.slice(i, end).trim();
        i = end;
      }
    }
    // The first occurrence wins, as browsers and most servers do.
    if (name !== '' && !(name in params)) params[name] = value;
  }
  return params;
}

/** `multipart/form-data; boundary="x"` -> { type: 'multipart/form-data', params: { boundary: 'x' } }. */
export function parseContentType(header: string): ContentType {
  const semicolon = header.indexOf(';');
  const type = (semicolon < 0 ? header : header.slice(0, semicolon)).trim().toLowerCase();
  return { type, params: semicolon < 0 ? {} : parseParams(header, semicolon + 1) };
}

/** The boundary of a multipart Content-Type; throws a MultipartError when it is missing or invalid. */
export function boundaryOf(contentType: string): string {
  const boundary = parseContentType(contentType).params.boundary;
  if (boundary === undefined || boundary === '')
    throw new MultipartError('multipart body without a boundary');
  // RFC 2046: 1 to 70 characters, not ending in a space.
  if (boundary.length > 70 || boundary.endsWith(' ') || /[^\x20-\x7e]/.test(boundary)) {
    throw new MultipartError('invalid multipart boundary');
  }
  return boundary;
}

/** RFC 5987 `UTF-8''%e2%82%ac.png` -> '€.png'; null when it is not in that form. */
function extendedValue(value: string): string | null {
  const match = /^([A-Za-z0-9!#$&+^`{}~-]+)'[^']*'(.*)$/.exec(value);
  if (!match) return null;
  const charset = match[1]!.toLowerCase();
  try {
    if (charset === 'utf-8') return decodeURIComponent(match[2]!);
    if (charset === 'iso-8859-1') {
      return match[2]!.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) =>
        String.fromCharCode(parseInt(hex, 16)),
      );
    }
  } catch {
    return null;
  }
  return null;
}

function parseHeaders(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  let last: string | null = null;
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    // Obsolete line folding: a line starting with white space continues the previous header.
    if ((line[0] === ' ' || line[0] === '\t') && last !== null) {
      headers[last] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError(`malformed part header: ${JSON.stringify(line.slice(0, 80))}`);
    last = line.slice(0, colon).trim().toLowerCase();
    headers[last] = line.slice(colon + 1).trim();
  }
  return headers;
}

const CRLF = Buffer.from('\r\n');
const DASHES = Buffer.from('--');

function isBlank(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09;
}

/**
 * Where the next delimiter (`\r\n--boundary` then `--`, or blanks and CRLF, or the end of the body)
 * starts at or after `from`; -1 if there is none.
 */
function findDelimiter(body: Buffer, delimiter: Buffer, from: number): number {
  for (let at = body.indexOf(delimiter, from); at >= 0; at = body.indexOf(delimiter, at + 1)) {
    let after = at + delimiter.length;
    if (after >= body.length - 1) return at;
    if (body[after] === 0x2d && body[after + 1] === 0x2d) return at;
    while (isBlank(body[after])) after++;
    if (after >= body.length || (body[after] === 0x0d && body[after + 1] === 0x0a)) return at;
  }
  return -1;
}

/** Splits a multipart body into its parts. Throws a MultipartError for anything malformed or truncated. */
export function parseMultipart(
  body: Buffer,
  boundary: string,
  limits: MultipartLimits = {},
): MultipartPart[] {
  const maxParts = limits.maxParts ?? 1000;
  const maxHeaderBytes = limits.maxHeaderBytes ?? 16 * 1024;
  const dashBoundary = Buffer.from(`--${boundary}`, 'latin1');
  const delimiter = Buffer.concat([CRLF, dashBoundary]);
  // The first boundary opens the body, or follows a preamble and a CRLF.
  let at: number;
  if (body.subarray(0, dashBoundary.length).equals(dashBoundary)) at = -2;
  else {
    at = findDelimiter(body, delimiter, 0);
    if (at < 0) throw new MultipartError('no multipart boundary in the body');
  }
  let pos = at + delimiter.length;
  const parts: MultipartPart[] = [];
  for (;;) {
    // Just after a `--boundary`: `--` closes the body; otherwise blanks, CRLF and a part.
    if (body.subarray(pos, pos + 2).equals(DASHES)) return parts;
    while (isBlank(body[pos])) pos++;
    if (!body.subarray(pos, pos + 2).equals(CRLF)) {
      throw new MultipartError('truncated multipart body (no closing boundary)');
    }
    pos += 2;
    let headers: Record<string, string> = {};
    let contentStart: number;
    if (body.subarray(pos, pos + 2).equals(CRLF))
      contentStart = pos + 2; // a part without headers
    else {
      const headersEnd = body.indexOf('\r\n\r\n', pos);
      if (headersEnd < 0 || headersEnd - pos > maxHeaderBytes) {
        throw new MultipartError(
          headersEnd < 0 ? 'truncated multipart body (part headers do not end)' : 'part headers too large',
        );
      }
      headers = parseHeaders(body.toString('utf8', pos, headersEnd));
      contentStart = headersEnd + 4;
    }
    const next = findDelimiter(body, delimiter, contentStart);
    if (next < 0) throw new MultipartError('truncated multipart body (no closing boundary)');
    if (parts.length >= maxParts) throw new MultipartError(`more than ${maxParts} parts`);
    const disposition = headers['content-disposition'];
    const params = disposition === undefined ? {} : parseContentType(disposition).params;
    const extended = params['filename*'] === undefined ? null : extendedValue(params['filename*']);
    const type = headers['content-type'];
    parts.push({
      name: params.name ?? null,
      filename: extended ?? params.filename ?? null,
      contentType: type === undefined ? null : parseContentType(type).type,
      headers,
      data: body.subarray(contentStart, next),
    });
    pos = next + delimiter.length;
  }
}
