/** The printed form of each section of `npm run bench`: plain-text tables. */
import type { HandoffProfile } from './measure/handoff-profile.js';
import { PHASES, type HandoffResult } from './measure/handoff.js';
import type { FloorResult } from './measure/fd-floor.js';
import type { LiverollOutcome } from './measure/liveroll.js';
import type { ImportResult } from './measure/import-time.js';
import type { ProxySummary } from './measure/liveroll-proxy.js';
import type { MemoryOutcome } from './measure/memory.js';
import { fmt, table, type Summary } from './support/stats.js';
import type { ClientOutcome, VariantOutcome } from './measure/upgrades.js';

/** Section 1's figures for one listener count. */
export interface HandoffSize {
  listeners: number;
  targetMs: number;
  /** Go tableroll's chain, alternated with the headline's, when --go-peer was given. */
  go?: HandoffResult;
  /** The headline: newcomers as an application runs them (no logger, cold code). */
  handoff: HandoffResult;
  floor: FloorResult;
  /** Diagnostics: cold newcomers noting their steps; newcomers that ran a handoff first. */
  steps: HandoffResult;
  prewarmed: HandoffResult;
  /** Diagnostic: newcomers that compile their code at load (node --no-lazy), not on first call. */
  eagerCompile: HandoffResult;
  /** Diagnostic: newcomers from a copy built by plain tsc, without the eager-compile pass. */
  lazyBuild: HandoffResult;
  /** Diagnostic: the plain-tsc build with V8's compile-hints comment in each core module. */
  compileHints: HandoffResult;
  /** Diagnostic (Node 22+): newcomers with NODE_COMPILE_CACHE set to a filled cache. */
  compileCache?: HandoffResult;
  /** Diagnostic: newcomers whose fd table was grown first (large counts only). */
  pregrown?: HandoffResult;
}

const ms = (s: Summary | undefined): string => (s ? `${fmt(s.median)} (${fmt(s.p95)})` : '-');

function headlineTable(sizes: HandoffSize[]): string {
  const withGo = sizes.some((s) => s.go !== undefined);
  const goCells = (s: HandoffSize): string[] =>
    withGo
      ? [
          s.go ? fmt(s.go.handoff.median) : '-',
          s.go ? `${(s.handoff.handoff.median / s.go.handoff.median).toFixed(2)}x` : '-',
        ]
      : [];
  const table1 = table(
    [
      'listeners',
      'handoff median',
      'p95',
      'target',
      ...(withGo ? ['Go tableroll, same run', 'Node / Go'] : []),
      'floor cold',
    ],
    sizes.map((s) => [
      String(s.listeners),
      fmt(s.handoff.handoff.median),
      fmt(s.handoff.handoff.p95),
      `< ${s.targetMs}`,
      ...goCells(s),
      fmt(s.floor.cold.median),
    ]),
  );
  const note = withGo
    ? 'Go: the --go-peer program, every process of its chain, alternated with the Node chains.'
    : 'Go tableroll: not measured (no --go-peer given), so no Go column; see docs/benchmarks.md.';
  return `${table1}\n${note}`;
}

function phasesTable(sizes: HandoffSize[]): string {
  const cell = (r: HandoffResult, name: string): string => fmt(r.phases?.[name]?.median ?? NaN);
  const rows = PHASES.map(([name]) => [
    name,
    ...sizes.flatMap((s) => [cell(s.steps, name), cell(s.prewarmed, name)]),
  ]);
  rows.push([
    'total (median handoff)',
    ...sizes.flatMap((s) => [fmt(s.steps.handoff.median), fmt(s.prewarmed.handoff.median)]),
  ]);
  const header = sizes.flatMap((s) => [`${s.listeners} cold`, `${s.listeners} warm`]);
  return table(['phase (ms, medians)', ...header], rows);
}

function diagnosticsTable(sizes: HandoffSize[]): string {
  const row = (name: string, pick: (s: HandoffSize) => Summary | undefined): string[] => [
    name,
    ...sizes.map((s) => ms(pick(s))),
  ];
  return table(
    ['newcomer (ms, median (p95))', ...sizes.map((s) => `${s.listeners} listeners`)],
    [
      row('as an application runs it (the headline)', (s) => s.handoff.handoff),
      row('code compiled at load (node --no-lazy)', (s) => s.eagerCompile.handoff),
      row('built by plain tsc (compiled on first call)', (s) => s.lazyBuild.handoff),
      row('plain tsc + //# allFunctionsCalledOnLoad (V8 13+)', (s) => s.compileHints.handoff),
      row('NODE_COMPILE_CACHE, cache filled (Node 22+)', (s) => s.compileCache?.handoff),
      row('code warmed by one handoff in the process first', (s) => s.prewarmed.handoff),
      row('fd table grown first (code cold)', (s) => s.pregrown?.handoff),
      row('floor: cold, fresh processes', (s) => s.floor.cold),
      row('floor: cold, receiver fd table grown first', (s) => s.floor.coldPregrown),
      row('floor: warm', (s) => s.floor.warm),
    ],
  );
}

/** Section 1: the headline table, the phases, the diagnostics, the profile. */
export function handoffReport(
  sizes: HandoffSize[],
  profiles: HandoffProfile[],
  importTime: ImportResult,
): string {
  const diagnosed = sizes.flatMap((s) => [s.steps, s.prewarmed]);
  const waits = diagnosed.reduce((n, r) => n + (r.lockWaits ?? 0), 0);
  const noted = diagnosed.reduce((n, r) => n + r.handoff.n, 0);
  const parts = [
    '1. Handoff time in the newcomer (Upgrader.create to ready() resolved, Node start-up excluded), ms',
    headlineTable(sizes),
    'floor cold: the addon alone passing as many fds (native.send, one per message) between two',
    'pre-started Node processes, first send to the one-byte answer, in a fresh pair (cold code, fd',
    'table not grown yet, as in a newcomer); the warm floor is below.',
    '',
    'Where the time goes: phases between the steps the Upgrader logs (cold = fresh newcomer as above,',
    'warm = a newcomer that ran one handoff inside itself first, so its code is compiled):',
    phasesTable(sizes),
    `The newcomer found the lock taken (and paused to retry) in ${waits} of these ${noted} handoffs.`,
    '',
    'Diagnostics:',
    diagnosticsTable(sizes),
    'The headline, the plain-tsc build, the compile hints, the compile cache (Node 22+) and Go',
    '(with --go-peer) ran in alternating chains, as many handoffs each.',
    '',
    `What the build's eager-compile pass costs at load: import('tableroll') in a fresh process,`,
    `${importTime.published.importMs.n} of each, alternated (ms and MiB of heap, median (p95)):`,
    table(
      ['build', 'import', 'heap after'],
      [
        [
          'published (eager-compile pass)',
          ms(importTime.published.importMs),
          ms(importTime.published.heapMiB),
        ],
        ['plain tsc', ms(importTime.plainTsc.importMs), ms(importTime.plainTsc.heapMiB)],
      ],
    ),
  ];
  for (const profile of profiles) parts.push('', profileReport(profile));
  return parts.join('\n');
}

function profileReport(p: HandoffProfile): string {
  const rows = (list: HandoffProfile['byKind']): string[][] =>
    list.map((r) => [r.name, fmt(r.msPerHandoff), `${fmt(r.share * 100, 0)}%`]);
  return [
    `CPU profile of ${p.handoffs} cold newcomers with ${p.listeners} listener(s) (node --cpu-prof, ` +
      `samples inside the handoff; ${fmt(p.sampledMsPerHandoff)} ms sampled per handoff, inflated by the profiler):`,
    table(['by kind of code', 'ms/handoff', 'share'], rows(p.byKind)),
    table(['by function (self time)', 'ms/handoff', 'share'], rows(p.topSelf)),
    table(
      ['tableroll function on the stack (inclusive)', 'ms/handoff', 'share'],
      rows(p.tablerollInclusive),
    ),
  ].join('\n');
}

function clientRow(variant: string, clients: string, o: ClientOutcome): string[] {
  const other = Object.entries(o.other).map(([k, v]) => `${k}: ${v}`);
  return [
    variant,
    clients,
    String(o.served),
    String(o.failed),
    String(o.econnreset),
    String(o.socketHangUp),
    other.length > 0 ? other.join(', ') : '0',
    fmt(o.medianSlot, 0),
    `${fmt(o.dip.median * 100, 0)}%`,
    `${fmt(o.dip.worst * 100, 0)}%`,
  ];
}

/** Section 2. */
export function upgradesReport(variants: VariantOutcome[], spacingMs: number): string {
  const rows = variants.flatMap((v) => [
    clientRow(v.label, 'keep-alive', v.keepAlive),
    clientRow('', 'conn per request', v.fresh),
    clientRow('', 'all', v.all),
  ]);
  const lines = [
    `2. ${variants[0]?.upgrades ?? 0} consecutive upgrades under continuous load, per server variant`,
    table(
      [
        'old process',
        'clients',
        'served',
        'failed',
        'ECONNRESET',
        'socket hang up',
        'other',
        'req/100ms',
        'dip median',
        'dip worst',
      ],
      rows,
    ),
    `Each newcomer starts ${spacingMs} ms after the previous one was ready. dip: the lowest 100 ms ` +
      'slot within +-300 ms of a handoff, as a share of the median slot (100% = no dip).',
  ];
  for (const v of variants) {
    lines.push(
      `${v.label}: ${v.upgrades} upgrades in ${fmt(v.durationS, 1)} s, newcomer handoff under load ` +
        `median ${fmt(v.handoffMs.median)} ms, p95 ${fmt(v.handoffMs.p95)} ms; old processes that did ` +
        `not exit cleanly: ${v.uncleanExits}`,
    );
  }
  return lines.join('\n');
}

/** Section 3. */
export function liverollReport(
  proxy: ProxySummary[],
  plan: { rounds: number; seconds: number; connections: number },
  roll: LiverollOutcome,
): string {
  const reasons = (r: Record<string, number>): string =>
    Object.entries(r)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ') || '-';
  return [
    '3. liveroll',
    `Proxy vs direct to the child: ${plan.connections} keep-alive connections, ${plan.rounds} alternating ` +
      `rounds of ${plan.seconds} s per target (medians); target >= 0.8x throughput`,
    table(
      [
        'workload',
        'direct req/s',
        'proxy req/s',
        'ratio',
        'direct p99 ms',
        'proxy p99 ms',
        'errors',
        'proxy CPU/req us',
      ],
      proxy.map((s) => [
        s.path,
        fmt(s.directRps, 0),
        fmt(s.proxiedRps, 0),
        `${fmt(s.ratio)}x`,
        fmt(s.directP99Ms),
        fmt(s.proxiedP99Ms),
        String(s.errors),
        fmt(s.proxyCpuUsPerRequest, 0),
      ]),
    ),
    ...proxy
      .filter((s) => s.relayRatio !== undefined)
      .map(
        (s) =>
          `${s.path} through a plain TCP relay in Node (bench/tcp-relay.ts, parses nothing: a ceiling for ` +
          `a proxy in Node here): ${fmt(s.relayedRps!, 0)} req/s, ${fmt(s.relayRatio!)}x, ` +
          `${fmt(s.relayCpuUsPerRequest!, 0)} us CPU/req`,
      ),
    '',
    'Failed requests through the public port under load (keep-alive and connection-per-request clients); target 0',
    table(
      ['phase', 'served', 'failed', 'reasons', 'time'],
      [
        [
          `${roll.updates} rolling updates (SIGHUP)`,
          String(roll.rolling.served),
          String(roll.rolling.failed),
          reasons(roll.rolling.reasons),
          `median ${fmt(roll.updateMs.median, 0)} ms per update`,
        ],
        [
          'takeover by a second instance',
          String(roll.takeover.served),
          String(roll.takeover.failed),
          reasons(roll.takeover.reasons),
          `${fmt(roll.takeoverMs, 0)} ms to the first one's exit (code ${String(roll.firstInstanceExit)})`,
        ],
      ],
    ),
  ].join('\n');
}

/** Section 4. */
export function memoryReport(m: MemoryOutcome, copies: number): string {
  return [
    `4. Memory of idle processes (VmRSS, MiB, median of ${copies})`,
    table(
      ['process', 'RSS MiB'],
      [
        ['bare node -e (reference)', fmt(m.bareNodeMiB, 1)],
        ['Upgrader with 1 listener', fmt(m.upgrader1MiB, 1)],
        ['Upgrader with 500 listeners', fmt(m.upgrader500MiB, 1)],
        ['liveroll itself', fmt(m.liverollMiB, 1)],
        [
          `liveroll and its child: the process tree (${m.liverollTreeProcesses} processes)`,
          fmt(m.liverollTreeMiB, 1),
        ],
        [
          `the same during a roll, two children (${m.liverollTwoChildrenProcesses} processes)`,
          fmt(m.liverollTwoChildrenTreeMiB, 1),
        ],
      ],
    ),
  ].join('\n');
}
