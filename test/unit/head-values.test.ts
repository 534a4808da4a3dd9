/**
 * The proxy's readers of raw header lists, which look only at names of the lengths they want:
 * Content-Length for the upstream client's raw bodies, the child's Keep-Alive timeout, and the
 * response head the fast lane writes. Pure functions on the lists llhttp gives, so tested on
 * lists; the proxy tests send the same cases through real sockets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  forwardRawHeaders,
  responseHeadLines,
  type HeadFacts,
} from '../../src/liveroll/proxy/forward-headers.js';
import {
  contentLength,
  isName,
  keepAliveMs,
  keepAliveValue,
} from '../../src/liveroll/proxy/head-values.js';

describe('isName', () => {
  it('matches a name in any case, and nothing else', () => {
    for (const name of ['content-length', 'Content-Length', 'CONTENT-LENGTH', 'cOnTeNt-LeNgTh']) {
      assert.ok(isName(name, 'content-length'), name);
    }
    for (const name of ['content-lengtH2', 'content_length', 'content-lengt', 'contentxlength']) {
      assert.ok(!isName(name, 'content-length'), name);
    }
    assert.ok(!isName('Keep-Alive', 'connection'), 'same length, other name');
  });
});

describe('contentLength', () => {
  it('reads one Content-Length in any case, with blanks around it', () => {
    assert.equal(contentLength(['Content-Type', 'text/plain', 'Content-Length', '12']), 12);
    assert.equal(contentLength(['CONTENT-LENGTH', ' 0\t']), 0);
    assert.equal(contentLength(['content-length', '999999999999999']), 999_999_999_999_999);
  });

  it('gives nothing for no length, a repeated one, a bad one, or Transfer-Encoding', () => {
    assert.equal(contentLength(['Content-Type', 'text/plain']), undefined);
    assert.equal(contentLength(['Content-Length', '3', 'content-length', '3']), undefined);
    for (const bad of ['', ' ', '1x', '-1', '1 2', '+1', '0x10', '1000000000000000']) {
      assert.equal(contentLength(['Content-Length', bad]), undefined, JSON.stringify(bad));
    }
    assert.equal(contentLength(['Content-Length', '3', 'Transfer-Encoding', 'chunked']), undefined);
  });
});

describe('keepAliveValue and keepAliveMs', () => {
  it("finds the child's Keep-Alive and reads its timeout in ms", () => {
    const value = keepAliveValue(['Connection', 'keep-alive', 'KEEP-ALIVE', 'timeout=5, max=9']);
    assert.equal(value, 'timeout=5, max=9');
    assert.equal(keepAliveMs(value ?? ''), 5_000);
    assert.equal(keepAliveValue(['Connection', 'keep-alive']), undefined);
    assert.equal(keepAliveMs('max=9'), undefined);
  });
});

describe('responseHeadLines', () => {
  it('drops hop-by-hop headers, keeps Trailer, and says whether length and date came', () => {
    const facts: HeadFacts = { contentLength: true, date: true };
    const lines = responseHeadLines(
      ['Content-Type', 'a/b', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5'].concat([
        'Transfer-Encoding',
        'chunked',
        'Trailer',
        'X-Sum',
        'TE',
        'x',
        'Upgrade',
        'y',
      ]),
      facts,
    );
    assert.equal(lines, 'Content-Type: a/b\r\nTrailer: X-Sum\r\n');
    assert.deepEqual(facts, { contentLength: false, date: false });
  });

  it('drops a header of any length that Connection names, wherever it comes', () => {
    const facts: HeadFacts = { contentLength: false, date: false };
    const lines = responseHeadLines(
      [
        'X-Secret-Hop',
        's',
        'Date',
        'd',
        'Connection',
        'keep-alive, x-secret-hop',
        'Content-Length',
        '1',
      ],
      facts,
    );
    assert.equal(lines, 'Date: d\r\nContent-Length: 1\r\n');
    assert.deepEqual(facts, { contentLength: true, date: true });
  });
});

describe('forwardRawHeaders', () => {
  it('drops forged and hop-by-hop names in any case, and passes long names through', () => {
    const long = `X-${'a'.repeat(40)}`;
    const out = forwardRawHeaders(
      [
        'HOST',
        'h.example',
        'x-FORWARDED-for',
        '6.6.6.6',
        'X-Forwarded-Host',
        'forged',
        'Forwarded',
        'for=6.6.6.6',
        'PROXY-AUTHORIZATION',
        'p',
        'Te',
        'trailers',
        long,
        'kept',
        'Accept',
        '*/*',
      ],
      '::ffff:10.0.0.7',
      { trustForwardHeaders: false, upgrade: false },
    );
    assert.deepEqual(out, [
      'HOST',
      'h.example',
      long,
      'kept',
      'Accept',
      '*/*',
      'x-forwarded-for',
      '10.0.0.7',
      'x-forwarded-proto',
      'http',
      'x-forwarded-host',
      'h.example',
    ]);
  });
});
