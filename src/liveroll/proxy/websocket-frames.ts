/**
 * Just enough of WebSocket framing (RFC 6455 section 5.2) for liveroll to end a tunnel politely:
 * it follows the frame boundaries of the child-to-client stream without buffering or decoding
 * payloads, so that a Close frame can be put between two frames, never inside one. A control
 * frame may sit between the fragments of a message, so a frame boundary is enough.
 */

/** Status 1001: the endpoint is going away (a server shutting down). */
export const GOING_AWAY = 1001;

/** An unmasked Close frame (server to client) with `code` and a short UTF-8 `reason`. */
export function closeFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const frame = Buffer.alloc(4 + text.length);
  frame[0] = 0x88; // FIN, opcode 8 (Close)
  frame[1] = 2 + text.length; // unmasked, payload length
  frame.writeUInt16BE(code, 2);
  text.copy(frame, 4);
  return frame;
}

/** Tracks where frames start and end in one direction of a WebSocket stream. */
export class FrameBoundaries {
  /** Bytes of the current frame's header seen so far (at most 14). */
  private header = Buffer.alloc(14);
  private headerSeen = 0;
  /** Payload bytes of the current frame still to come. */
  private payloadLeft = 0;

  /** True between two frames. */
  get atBoundary(): boolean {
    return this.headerSeen === 0 && this.payloadLeft === 0;
  }

  /**
   * Follows `chunk`; returns how many of its bytes were taken. With `stopAtBoundary`, it stops
   * at the first frame boundary (returning 0 when already at one), else it takes everything.
   */
  consume(chunk: Buffer, stopAtBoundary = false): number {
    let at = 0;
    while (at < chunk.length) {
      if (stopAtBoundary && this.atBoundary) return at;
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - at);
        this.payloadLeft -= take;
        at += take;
        continue;
      }
      this.header[this.headerSeen++] = chunk[at++] as number;
      const needed = this.headerLength();
      if (needed !== undefined && this.headerSeen === needed) {
        this.payloadLeft = this.payloadLength();
        this.headerSeen = 0;
      }
    }
    return at;
  }

  /** The current header's full length, once its first two bytes are known. */
  private headerLength(): number | undefined {
    if (this.headerSeen < 2) return undefined;
    const second = this.header[1] as number;
    const length7 = second & 0x7f;
    const extended = length7 === 126 ? 2 : length7 === 127 ? 8 : 0;
    const mask = (second & 0x80) !== 0 ? 4 : 0;
    return 2 + extended + mask;
  }

  private payloadLength(): number {
    const length7 = (this.header[1] as number) & 0x7f;
    if (length7 === 126) return this.header.readUInt16BE(2);
    // 2^53 bytes is more than any frame that will ever pass; a larger claim is treated as that.
    if (length7 === 127) return Number(this.header.readBigUInt64BE(2) & 0x1fffffffffffffn);
    return length7;
  }
}
