// How the fuzz test (45-fuzz) reads its own byte stream as the broker will: packet by packet, by
// their remaining lengths. A lying length can make a packet end inside the next one, or take in
// the PINGREQ the test sends as a marker; silence is then the broker's right answer, not a fault.

/**
 * Where the stream's packets start, and how many bytes its last packet still lacks: 0 when every
 * packet is complete, or when the broker must judge at once anyway (a remaining length over
 * `maxPacket` or longer than 4 bytes). An unfinished remaining length lacks one byte (0x00 ends it).
 */
export function scanPackets(s: ArrayLike<number>, maxPacket: number): { starts: number[]; missing: number } {
  const starts: number[] = [];
  let i = 0;
  while (i < s.length) {
    starts.push(i);
    let j = i + 1;
    let length = 0;
    for (let k = 0; ; k++) {
      if (j >= s.length) return { starts, missing: 1 };
      const b = s[j++]!;
      length += (b & 0x7f) * 128 ** k;
      if (!(b & 0x80)) break;
      if (k === 3) return { starts, missing: 0 }; // malformed
    }
    if (length > maxPacket) return { starts, missing: 0 };
    if (j + length > s.length) return { starts, missing: j + length - s.length };
    i = j + length;
  }
  return { starts, missing: 0 };
}

/** Whether the packet at `at` (the marker the test sent last) is read as a packet of its own. */
export function standsAlone(s: ArrayLike<number>, at: number, maxPacket: number): boolean {
  return scanPackets(s, maxPacket).starts.includes(at);
}
