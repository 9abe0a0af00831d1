// The client id of a CONNECT still in raw bytes: a shard that is not the id's home sends the
// connection on to the home before parsing anything more (docs/scale-out.md §4). Pure, and total:
// bytes it cannot read as a CONNECT are "local" (the broker's own parser then answers them).

/** "more": not enough bytes yet; "local": not a readable CONNECT, handle here; else the client id. */
export type Peeked = { more: true } | { local: true } | { clientId: string };

const MORE: Peeked = { more: true };
const LOCAL: Peeked = { local: true };
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function peekClientId(b: Uint8Array): Peeked {
  if (b.length === 0) return MORE;
  if (b[0] !== 0x10) return LOCAL; // not CONNECT
  let i = 1;
  // remaining length: 1 to 4 bytes
  let remaining = 0;
  for (let shift = 0; ; shift += 7) {
    if (i >= b.length) return MORE;
    if (shift > 21) return LOCAL;
    const byte = b[i++]!;
    remaining += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) break;
  }
  const end = i + remaining;
  const need = (n: number) => i + n <= Math.min(end, b.length);
  const short = () => (b.length < end ? MORE : LOCAL);
  // protocol name, level, flags, keep-alive
  if (!need(2)) return short();
  const nameLength = (b[i]! << 8) | b[i + 1]!;
  i += 2 + nameLength;
  if (!need(4)) return short();
  const level = b[i]!;
  i += 4;
  if (level === 5) {
    let props = 0;
    for (let shift = 0; ; shift += 7) {
      if (!need(1)) return short();
      if (shift > 21) return LOCAL;
      const byte = b[i++]!;
      props += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
    }
    i += props;
  }
  if (!need(2)) return short();
  const idLength = (b[i]! << 8) | b[i + 1]!;
  i += 2;
  if (!need(idLength)) return short();
  try {
    return { clientId: decoder.decode(b.subarray(i, i + idLength)) };
  } catch {
    return LOCAL;
  }
}
