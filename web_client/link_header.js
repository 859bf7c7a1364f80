// HTTP `Link` headers (RFC 8288) and the ICE servers a WHIP/WHEP server announces in them
// (RFC 9725 4.6): `<turn:host:3478?transport=udp>; rel="ice-server"; username="…";
// credential="…"; credential-type="password"`. `fetch` joins several Link headers with
// ", ", and a quoted value may itself hold commas and semicolons, so the value is read
// character by character, never split.

const ICE_SCHEMES = /^(stun|stuns|turn|turns):/i;
const WHITESPACE = " \t";

/**
 * Parse a Link header value into [{uri, params}] (parameter names lower-cased, the first
 * occurrence of a parameter kept, a parameter without a value as ""). Malformed links are
 * skipped up to the next comma; never throws.
 */
export function parseLinkHeader(value) {
  const links = [];
  if (typeof value !== "string") return links;
  let i = 0;
  const n = value.length;
  const skipSpace = () => {
    while (i < n && WHITESPACE.includes(value[i])) i += 1;
  };
  const skipToNextLink = () => {
    let quoted = false;
    for (; i < n; i += 1) {
      const c = value[i];
      if (quoted && c === "\\") i += 1;
      else if (c === '"') quoted = !quoted;
      else if (c === "," && !quoted) break;
    }
  };
  const readQuoted = () => {
    let out = "";
    i += 1; // the opening quote
    while (i < n && value[i] !== '"') {
      if (value[i] === "\\" && i + 1 < n) i += 1;
      out += value[i];
      i += 1;
    }
    if (i >= n) return null; // no closing quote
    i += 1;
    return out;
  };
  const readToken = (stops) => {
    const start = i;
    while (i < n && !stops.includes(value[i])) i += 1;
    return value.slice(start, i);
  };
  while (i < n) {
    skipSpace();
    if (value[i] === ",") {
      i += 1;
      continue;
    }
    if (value[i] !== "<") {
      skipToNextLink();
      continue;
    }
    const end = value.indexOf(">", i + 1);
    const uri = end < 0 ? "" : value.slice(i + 1, end).trim();
    if (!uri || /[<"\s]/.test(uri)) {
      // No closing ">" of its own (a URI holds no "<", quote or space): not a link.
      i += 1;
      skipToNextLink();
      continue;
    }
    const link = { uri, params: {} };
    i = end + 1;
    let ok = true;
    for (;;) {
      skipSpace();
      if (i >= n || value[i] === ",") break;
      if (value[i] !== ";") {
        ok = false;
        break;
      }
      i += 1;
      skipSpace();
      const name = readToken(`=;, \t`).toLowerCase();
      skipSpace();
      let param = "";
      if (value[i] === "=") {
        i += 1;
        skipSpace();
        param = value[i] === '"' ? readQuoted() : readToken(`;, \t`);
        if (param === null) {
          ok = false;
          break;
        }
      }
      if (name && !(name in link.params)) link.params[name] = param;
    }
    if (ok) links.push(link);
    else skipToNextLink();
  }
  return links;
}

/**
 * The RTCIceServer list of a Link header value: one entry per link whose `rel` names
 * "ice-server" and whose URL is stun:, stuns:, turn: or turns:; TURN entries carry their
 * `username` and `credential` when both are given.
 */
export function iceServersFromLinks(value) {
  const servers = [];
  for (const { uri, params } of parseLinkHeader(value)) {
    const rels = (params.rel ?? "").toLowerCase().split(/\s+/);
    if (!rels.includes("ice-server") || !ICE_SCHEMES.test(uri)) continue;
    const server = { urls: [uri] };
    if (/^turns?:/i.test(uri) && params.username !== undefined && params.credential !== undefined) {
      server.username = params.username;
      server.credential = params.credential;
    }
    servers.push(server);
  }
  return servers;
}
