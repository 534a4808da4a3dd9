/**
 * liveroll's parsers (src/liveroll/proxy/upstream-parser.ts) on Node's real llhttp binding:
 * keep-alive messages with whole heads reuse one parser state, which is what saves its
 * re-initialization (about 1,500 instructions each), and every other shape still parses right.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { ParserBinding } from '../../src/liveroll/proxy/upstream-parser.js';

const require = createRequire(import.meta.url);
const { HTTPParser } = require('_http_common') as {
  HTTPParser: { prototype: { initialize: (...args: unknown[]) => void } };
};

/** Runs `body` while counting the binding's initialize() calls. */
function countingInits(body: () => void): number {
  const original = HTTPParser.prototype.initialize;
  let count = 0;
  HTTPParser.prototype.initialize = function (this: unknown, ...args: unknown[]) {
    count++;
    original.apply(this, args);
  };
  try {
    body();
  } finally {
    HTTPParser.prototype.initialize = original;
  }
  return count;
}

const binding = new ParserBinding(require);
const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('response parser reuse', () => {
  it('parses 50 keep-alive responses with one initialization', () => {
    const seen: string[] = [];
    const inits = countingInits(() => {
      const parser = binding.responseParser({
        headers: (status) => seen.push(String(status)),
        body: (chunk) => seen.push(chunk.toString('latin1')),
        complete: () => seen.push('end'),
      });
      for (let i = 0; i < 50; i++) {
        const body = `body ${i}`;
        const error = parser.execute(
          latin1(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
        );
        assert.equal(error, undefined);
      }
      assert.equal(parser.keepAlive, true);
      parser.close();
    });
    assert.equal(inits, 1);
    assert.equal(seen.length, 150);
    assert.deepEqual(seen.slice(-3), ['200', 'body 49', 'end']);
  });

  it('keeps bodies whole across every way a read can cut them', () => {
    const message = 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n\r\n\r\nabcdef';
    // Every cut point, then the same message whole, all on one parser.
    const parser = binding.responseParser({
      headers: () => {},
      body: (chunk) => (received += chunk.toString('latin1')),
      complete: () => (ended += 1),
    });
    let received = '';
    let ended = 0;
    for (let cut = 1; cut < message.length; cut++) {
      received = '';
      assert.equal(parser.execute(latin1(message.slice(0, cut))), undefined, `cut ${cut}`);
      assert.equal(parser.execute(latin1(message.slice(cut))), undefined, `cut ${cut}`);
      assert.equal(received, '\r\n\r\nabcdef', `cut ${cut}`);
    }
    assert.equal(ended, message.length - 1);
    parser.close();
  });

  it('parses chunked and bodiless responses between sized ones', () => {
    const seen: string[] = [];
    const parser = binding.responseParser({
      headers: (status) => seen.push(String(status)),
      body: (chunk) => seen.push(chunk.toString('latin1')),
      complete: (trailers) => seen.push(`end ${trailers.join('|')}`),
    });
    const parts = [
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\ncd\r\n0\r\nX-T: 1\r\n\r\n',
      'HTTP/1.1 204 No Content\r\n\r\n',
      'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nef',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ngh',
    ];
    for (const part of parts) assert.equal(parser.execute(latin1(part)), undefined);
    parser.close();
    assert.deepEqual(seen, [
      '200',
      'ab',
      'end ',
      '200',
      'cd',
      'end X-T|1',
      '204',
      'end ',
      '200',
      'ef',
      'end ',
      '200',
      'gh',
      'end ',
    ]);
  });
});

describe('request parser reuse', () => {
  it('parses 50 keep-alive heads with one initialization, and starts afresh when it must', () => {
    const inits = countingInits(() => {
      const parser = binding.requestParser();
      for (let i = 0; i < 50; i++) {
        const head = parser.head(latin1(`GET /${i} HTTP/1.1\r\nHost: x\r\n\r\n`));
        assert.ok(typeof head === 'object' && head.url === `/${i}`);
      }
      // A head cut short, then a whole one: the parser starts afresh for it.
      assert.equal(parser.head(latin1('GET /cut HTTP/1.1\r\nHo')), undefined);
      const after = parser.head(latin1('POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi'));
      assert.ok(typeof after === 'object' && after.url === '/p' && after.length === 39);
      parser.close();
    });
    assert.equal(inits, 2);
  });
});
