// Secrets in URLs (a --download-url of `https://user:pass@host/file?token=...`) must never reach a
// terminal, a log, run.json or an HTTP answer: everything that shows or stores such a URL passes it
// through redactUrl (or redactText for free text that may hold one) first.

/** What replaces a secret: kept visible, so a reader sees that something was there. */
export const REDACTED = '***';

/** Query (and fragment) parameter names that carry credentials: tokens, keys, signatures, passwords. */
const SECRET_PARAM =
  /token|key|secret|sig|pass|pwd|auth|credential|session|jwt|bearer|cookie|private|code|nonce|otp/i;

function redactParams(part: string): string {
  // Rewritten by hand rather than through URLSearchParams, which would re-encode the other parameters.
  return part
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      let name = pair.slice(0, eq);
      try {
        name = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // A malformed escape: judge the raw name.
      }
      return SECRET_PARAM.test(name.replace(/[^a-z]/gi, '')) ? `${pair.slice(0, eq)}=${REDACTED}` : pair;
    })
    .join('&');
}

/**
 * The URL with its credentials replaced by `***`: the user name and password, and the value of every
 * query or fragment parameter whose name looks like a token, key, signature or password. Text that is
 * not a URL with a scheme is returned as it is, unless it holds an `@` before the first `/` (then it is
 * treated as `user:pass@host/...` without a scheme).
 */
export function redactUrl(url: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*:)(\/\/)?/i.exec(url);
  const start = scheme ? scheme[0].length : 0;
  if (!scheme && !/^[^/?#]*@/.test(url)) return url;
  let rest = url.slice(start);
  // Authority: everything up to the first /, ? or #; the user info is what precedes its last @.
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const at = authority.lastIndexOf('@');
  if (at >= 0) rest = `${REDACTED}@${rest.slice(at + 1)}`;
  const hash = rest.indexOf('#');
  const fragment = hash >= 0 ? rest.slice(hash + 1) : null;
  const beforeHash = hash >= 0 ? rest.slice(0, hash) : rest;
  const q = beforeHash.indexOf('?');
  const query = q >= 0 ? beforeHash.slice(q + 1) : null;
  const path = q >= 0 ? beforeHash.slice(0, q) : beforeHash;
  return (
    url.slice(0, start) +
    path +
    (query !== null ? `?${redactParams(query)}` : '') +
    (fragment !== null ? `#${redactParams(fragment)}` : '')
  );
}

/** Whether `url` is one that redactUrl changed: its secrets are gone, so it cannot be used as it is. */
export function isRedactedUrl(url: string): boolean {
  return url.includes(`${REDACTED}@`) || url.includes(`=${REDACTED}`);
}

/** Every URL inside `text` (an error message, a log line), redacted. */
export function redactText(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi, (url) => redactUrl(url));
}

/** A run configuration as it may be shown or stored: its download URL without credentials. */
export function redactConfig<T extends { downloadUrl?: string | undefined }>(config: T): T {
  if (config.downloadUrl === undefined) return config;
  return { ...config, downloadUrl: redactUrl(config.downloadUrl) };
}
