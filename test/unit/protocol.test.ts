import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MAX_BLOB_LENGTH,
  READY_MESSAGE,
  STEPPING_DOWN_MESSAGE,
  checkReadyBody,
  checkReply,
  decodeBlobBody,
  decodeLength,
  decodeMetadata,
  decodeVersionPrefix,
  descriptorName,
  encodeBlob,
  encodeMetadata,
  encodeReady,
  encodeSteppingDown,
  encodeVersionPrefix,
  type MetadataEntry,
} from '../../src/protocol.js';
import { ErrorCodes } from '../../src/errors.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** Splits a whole blob into its parts, checking the length prefix. */
function decodeWhole(blob: Buffer): { version: number; value: unknown } {
  const length = decodeLength(blob.subarray(0, 4));
  assert.equal(length, blob.length - 4);
  return decodeBlobBody(blob.subarray(4));
}

describe('version prefix', () => {
  it('encodes version 1 as TAB SPACE and 0 as nothing', () => {
    assert.equal(encodeVersionPrefix(1), '\t ');
    assert.equal(encodeVersionPrefix(0), '');
  });

  it('round-trips every version from 0 to 9999', () => {
    for (let version = 0; version <= 9999; version++) {
      const prefix = encodeVersionPrefix(version);
      assert.match(prefix, /^[ \t\r\n]*$/);
      const decoded = decodeVersionPrefix(Buffer.from(prefix + '{}'));
      assert.equal(decoded.version, version);
      assert.equal(decoded.rest.toString(), '{}');
    }
  });

  it('round-trips the largest uint32 and refuses a longer prefix', () => {
    const max = encodeVersionPrefix(0xffffffff);
    assert.equal(decodeVersionPrefix(Buffer.from(max + '[]')).version, 0xffffffff);
    assert.throws(() => decodeVersionPrefix(Buffer.from('\n'.repeat(17) + '[]')), {
      code: ErrorCodes.PROTOCOL,
    });
    assert.throws(() => encodeVersionPrefix(-1), { code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('decodes any whitespace run a Go encoder could write (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (version) => {
        const prefix = encodeVersionPrefix(version);
        return decodeVersionPrefix(Buffer.from(prefix + '[1]\n')).version === version;
      }),
    );
  });
});

describe('blobs and the test vectors of a Go v2.1.0 owner', () => {
  it('an owner with no descriptors sends 00 00 00 05 09 20 5b 5d 0a', () => {
    assert.deepEqual(encodeMetadata([]), hex('00000005 09205b5d0a'));
  });

  it('encodes a file, a unixgram conn and a tcp listener byte for byte', () => {
    const entries: MetadataEntry[] = [
      { kind: 'file', id: 'f1', network: '', addr: '' },
      { kind: 'conn', id: 'c1', network: 'unixgram', addr: '' },
      { kind: 'listener', id: 'web', network: 'tcp', addr: '127.0.0.1:0' },
    ];
    const json =
      '[{"kind":"file","id":"f1","network":"","addr":""},' +
      '{"kind":"conn","id":"c1","network":"unixgram","addr":""},' +
      '{"kind":"listener","id":"web","network":"tcp","addr":"127.0.0.1:0"}]';
    const expected = Buffer.concat([hex('000000b2 0920'), Buffer.from(json), hex('0a')]);
    assert.deepEqual(encodeMetadata(entries), expected);
    const { version, value } = decodeWhole(expected);
    assert.deepEqual(decodeMetadata(version, value), entries);
  });

  it('ready is 42 then a version-0 blob {"version":1}', () => {
    assert.deepEqual(
      encodeReady(),
      Buffer.concat([hex('42 0000000e'), Buffer.from('{"version":1}\n')]),
    );
    checkReadyBody(decodeWhole(encodeReady().subarray(1)).value);
    assert.deepEqual(READY_MESSAGE, encodeReady());
  });

  it('the reply is a version-0 blob {"msg":"stepping down"}', () => {
    const reply = encodeSteppingDown();
    assert.deepEqual(
      reply,
      Buffer.concat([hex('00000018'), Buffer.from('{"msg":"stepping down"}\n')]),
    );
    checkReply(decodeWhole(reply).value);
    assert.deepEqual(STEPPING_DOWN_MESSAGE, reply);
  });

  it('names descriptors as Go does and keeps them under 4096 bytes', () => {
    const entry: MetadataEntry = {
      kind: 'listener',
      id: 'web',
      network: 'tcp',
      addr: '127.0.0.1:8080',
    };
    assert.equal(descriptorName(entry).toString(), 'listener(web): tcp:127.0.0.1:8080');
    assert.equal(descriptorName({ ...entry, id: 'x'.repeat(5000) }).length, 4095);
    const file: MetadataEntry = { kind: 'file', id: 'f1', network: '', addr: '/var/log/app.log' };
    assert.equal(descriptorName(file).toString(), 'file(f1): /var/log/app.log');
  });

  it('round-trips arbitrary JSON values at any version (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.jsonValue(), (version, value) => {
        const decoded = decodeWhole(encodeBlob(version, value));
        assert.equal(decoded.version, version);
        assert.deepEqual(decoded.value, JSON.parse(JSON.stringify(value)));
      }),
    );
  });
});

describe('decoding hostile input', () => {
  it('refuses negative and oversized lengths', () => {
    assert.throws(() => decodeLength(hex('ffffffff')), { code: ErrorCodes.PROTOCOL });
    assert.throws(() => decodeLength(hex('80000000')), { code: ErrorCodes.PROTOCOL });
    const tooBig = Buffer.alloc(4);
    tooBig.writeInt32BE(MAX_BLOB_LENGTH + 1);
    assert.throws(() => decodeLength(tooBig), { code: ErrorCodes.PROTOCOL });
    assert.equal(decodeLength(hex('00100000')), MAX_BLOB_LENGTH);
    assert.throws(() => decodeLength(hex('000001')), { code: ErrorCodes.PROTOCOL });
  });

  it('decodes any four bytes as a big-endian int32, as Go does', () => {
    // Random bytes are almost never a length in bounds: half the runs are lengths near them.
    const nearBounds = fc.integer({ min: -16, max: MAX_BLOB_LENGTH + 16 }).map((length) => {
      const prefix = Buffer.alloc(4);
      prefix.writeInt32BE(length);
      return prefix;
    });
    const anyBytes = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => Buffer.from(b));
    fc.assert(
      fc.property(fc.oneof(anyBytes, nearBounds), (prefix) => {
        const expected = prefix.readInt32BE(0);
        if (expected >= 0 && expected <= MAX_BLOB_LENGTH) {
          assert.equal(decodeLength(prefix), expected);
        } else {
          assert.throws(() => decodeLength(prefix), { code: ErrorCodes.PROTOCOL });
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses bad JSON, wrong versions and malformed entries with ERR_TABLEROLL_PROTOCOL', () => {
    const bad: [number, unknown][] = [
      [2, []],
      [0, []],
      [1, {}],
      [1, [null]],
      [1, [{ kind: 'socket', id: 'x' }]],
      [1, [{ kind: 'listener', id: 7 }]],
      [
        1,
        [
          { kind: 'file', id: 'a' },
          { kind: 'file', id: 'a' },
        ],
      ],
    ];
    for (const [version, value] of bad) {
      assert.throws(
        () => decodeMetadata(version, value),
        { code: ErrorCodes.PROTOCOL },
        JSON.stringify(value),
      );
    }
    assert.throws(() => decodeBlobBody(Buffer.from('\t {nope')), { code: ErrorCodes.PROTOCOL });
    assert.throws(() => checkReadyBody({ version: 2 }), { code: ErrorCodes.PROTOCOL });
    assert.throws(() => checkReply({ msg: 'no' }), { code: ErrorCodes.PROTOCOL });
  });

  it('ignores unknown keys and fills absent network and addr (Go v3+)', () => {
    const entries = decodeMetadata(1, [
      { kind: 'file', id: 'f', extra: true },
      { kind: 'file', id: 'g', name: '/tmp/g' },
    ]);
    assert.deepEqual(entries, [
      { kind: 'file', id: 'f', network: '', addr: '' },
      { kind: 'file', id: 'g', network: '', addr: '/tmp/g' },
    ]);
  });

  it('never throws anything but a coded protocol error on random bodies (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          const { version, value } = decodeBlobBody(Buffer.from(bytes));
          decodeMetadata(version, value);
        } catch (err) {
          assert.equal((err as { code?: string }).code, ErrorCodes.PROTOCOL);
        }
      }),
    );
  });
});
