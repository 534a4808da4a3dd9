/**
 * `npm run bench`: every benchmark of tableroll and liveroll in one run, side by side on this
 * machine, each printed as a table (or all of them as one JSON document with --json).
 *
 *   node dist/bench/run.js [--quick] [--json] [--profile] [--only SECTIONS] [--go-peer PROGRAM]
 *
 * --quick   a smoke run: the same sections with few repetitions (well under a minute)
 * --json    one JSON document on stdout instead of the tables (progress goes to stderr)
 * --profile add CPU profiles of cold newcomers to the handoff section (node --cpu-prof)
 * --only    run only these sections
 *
 * Sections (the measuring code is in bench/measure/, the programs it spawns in bench/programs/,
 * the shared process and statistics helpers in bench/support/):
 *   handoff   handoff time in the newcomer with 1, 100 and 500 listeners next to the addon's raw
 *             fd round trip (handoff.ts, fd-floor.ts), and where the time goes
 *   cold      the addon's stand-ins for node:fs and setTimeout against Node's own, cold, in fresh
 *             processes (cold-calls.ts)
 *   upgrades  consecutive upgrades of the example server under load, next to a naive server
 *             (upgrades.ts)
 *   liveroll  proxy vs direct throughput and p99; failed requests across rolling updates and a
 *             takeover (liveroll-proxy.ts, liveroll.ts)
 *   fronts    with wrk: direct, nginx, liveroll proxy mode and direct mode side by side, and
 *             1 GiB transfers each way through them and a plain Node pipe (http-front.ts)
 *   memory    RSS of idle processes (memory.ts)
 *   soak      liveroll through many forced rolls under load, an owner through many failed
 *             handoffs: RSS, heap, descriptors and handles over time (soak.ts)
 */
import { parseArgs } from 'node:util';
import { measureFdFloor, type FloorPlan } from './measure/fd-floor.js';
import { profileHandoff, type HandoffProfile } from './measure/handoff-profile.js';
import {
  TARGET_MS,
  measureHandoff,
  measureHandoffsAlternated,
  type HandoffPlan,
} from './measure/handoff.js';
import { measureLiveroll, type LiverollPlan } from './measure/liveroll.js';
import {
  DEFAULT_PATHS,
  measureProxy,
  summarizeProxy,
  type ProxyPlan,
} from './measure/liveroll-proxy.js';
import { describeMachine, machineLine } from './support/machine.js';
import { measureImport, type ImportResult } from './measure/import-time.js';
import { buildLazyCopy } from './support/lazy-build.js';
import { removeTempDir, tempDir } from './support/processes.js';
import { frontReport, measureFronts, type FrontPlan } from './measure/http-front.js';
import { measureMemory, type MemoryPlan } from './measure/memory.js';
import { coldCallsReport, measureColdCalls, type ColdCallsPlan } from './measure/cold-calls.js';
import {
  handoffReport,
  liverollReport,
  memoryReport,
  upgradesReport,
  type HandoffSize,
} from './report.js';
import { measureUpgrades, type UpgradesPlan } from './measure/upgrades.js';
import { measureSoak, soakReport, type SoakPlan } from './measure/soak.js';

const SECTIONS = ['handoff', 'cold', 'upgrades', 'liveroll', 'fronts', 'memory', 'soak'] as const;
type Section = (typeof SECTIONS)[number];

/** Repetitions and durations of a run. */
interface Plan {
  sizes: number[];
  floor: FloorPlan;
  /** Timed handoffs per chain: the headline, and the diagnostic chains. */
  handoffs: number;
  /** Rounds the headline's handoffs are split into, alternating with the plain-tsc build's. */
  handoffRounds: number;
  diagnosticHandoffs: number;
  profileHandoffs: number;
  /** Fresh processes importing tableroll, per build. */
  importRuns: number;
  cold: ColdCallsPlan;
  upgrades: UpgradesPlan;
  proxy: ProxyPlan;
  fronts: FrontPlan;
  liveroll: LiverollPlan;
  memory: MemoryPlan;
  soak: SoakPlan;
}

const SIZES = [1, 100, 500];

const FULL: Plan = {
  sizes: SIZES,
  floor: { sizes: SIZES, pairs: 5, warmTrials: 6, pregrowSizes: [500] },
  handoffs: 20,
  handoffRounds: 4,
  diagnosticHandoffs: 10,
  profileHandoffs: 15,
  importRuns: 10,
  cold: { runs: 21 },
  upgrades: { upgrades: 100, spacingMs: 400, keepAliveClients: 4, freshClients: 4 },
  proxy: { rounds: 3, seconds: 1, connections: 32, paths: DEFAULT_PATHS },
  fronts: {
    rounds: 3,
    seconds: 3,
    connections: 32,
    path: '/',
    bulkRounds: 2,
    bulkBytes: 2 ** 30,
    pin: true,
  },
  liveroll: { updates: 5, keepAliveClients: 4, freshClients: 4, settleMs: 500 },
  memory: { copies: 3, settleMs: 1000 },
  soak: { rolls: 500, failedHandoffs: 1000 },
};

const QUICK: Plan = {
  sizes: SIZES,
  floor: { sizes: SIZES, pairs: 2, warmTrials: 3, pregrowSizes: [500] },
  handoffs: 5,
  handoffRounds: 1,
  diagnosticHandoffs: 3,
  profileHandoffs: 3,
  importRuns: 3,
  cold: { runs: 3 },
  upgrades: { upgrades: 8, spacingMs: 300, keepAliveClients: 4, freshClients: 4 },
  proxy: { rounds: 1, seconds: 0.4, connections: 32, paths: ['/', '/work?us=250'] },
  fronts: {
    rounds: 1,
    seconds: 1,
    connections: 32,
    path: '/',
    bulkRounds: 1,
    bulkBytes: 2 ** 26,
    pin: true,
  },
  liveroll: { updates: 2, keepAliveClients: 4, freshClients: 4, settleMs: 300 },
  memory: { copies: 1, settleMs: 300 },
  soak: { rolls: 12, failedHandoffs: 20 },
};

const USAGE = `usage: node dist/bench/run.js [--quick] [--json] [--profile] [--only SECTIONS]

  --quick    a smoke run: every section with few repetitions
  --json     one JSON document on stdout instead of the tables (progress on stderr)
  --profile  add CPU profiles of cold newcomers to the handoff section
  --only     a comma-separated list of sections: ${SECTIONS.join(', ')}
  --go-peer PROGRAM
             also time Go tableroll's handoffs, side by side: PROGRAM is a Go tableroll
             process with bench/programs/handoff-process.ts's flags and output (docs/benchmarks.md);
             TABLEROLL_GO_PEER works too
  --help     this text`;

function parseFlags(): ReturnType<typeof parse> {
  try {
    return parse();
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

function parse() {
  return parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      only: { type: 'string' },
      'go-peer': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
}

const { values } = parseFlags();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const plan = values.quick ? QUICK : FULL;
const hasCompileCache = Number(process.versions.node.split('.')[0]) >= 22;
const goPeer = values['go-peer'] ?? (process.env.TABLEROLL_GO_PEER || undefined);
const selected = (values.only?.split(',') ?? SECTIONS) as Section[];
for (const name of selected) {
  if (!SECTIONS.includes(name)) {
    console.error(`unknown section ${name}; one of ${SECTIONS.join(', ')}\n\n${USAGE}`);
    process.exit(2);
  }
}

/** Tables go to stdout, unless stdout is for the JSON document: then progress goes to stderr. */
function say(text: string): void {
  if (values.json) process.stderr.write(`${text}\n`);
  else console.log(text);
}

async function handoffSection(): Promise<{
  sizes: HandoffSize[];
  profiles: HandoffProfile[];
  importTime: ImportResult;
}> {
  say('measuring: handoff and the fd floor ...');
  // The copy first: the floor's pairs of processes then run while its files are written back.
  const lazyRoot = buildLazyCopy();
  const hintedRoot = buildLazyCopy(true);
  const floors = await measureFdFloor(plan.floor);
  const sizes: HandoffSize[] = [];
  let importTime: ImportResult;
  try {
    for (const [i, listeners] of plan.sizes.entries()) {
      const chain = { listeners, warmup: 1 };
      const diagnostic = { ...chain, handoffs: plan.diagnosticHandoffs };
      // The headline and its alternatives alternate, side by side: the plain-tsc build, the same
      // with V8's compile hints, NODE_COMPILE_CACHE (Node 22+) and Go (when given).
      const variants: [string, HandoffPlan][] = [
        ['handoff', { ...chain, handoffs: plan.handoffs }],
        ['lazyBuild', { ...chain, handoffs: plan.handoffs, buildRoot: lazyRoot }],
        ['compileHints', { ...chain, handoffs: plan.handoffs, buildRoot: hintedRoot }],
      ];
      if (hasCompileCache) {
        const env = { NODE_COMPILE_CACHE: tempDir('tr-ccache-') };
        variants.push(['compileCache', { ...chain, handoffs: plan.handoffs, env }]);
      }
      if (goPeer !== undefined) {
        variants.push(['go', { ...chain, handoffs: plan.handoffs, program: goPeer }]);
      }
      const measured = await measureHandoffsAlternated(
        variants.map(([, p]) => p),
        plan.handoffRounds,
      );
      const byName = new Map(variants.map(([name], i) => [name, measured[i]!]));
      const [handoff, lazyBuild, compileHints] = measured;
      const compileCache = byName.get('compileCache');
      const go = byName.get('go');
      sizes.push({
        listeners,
        targetMs: TARGET_MS[listeners] ?? NaN,
        go,
        compileCache,
        compileHints: compileHints!,
        handoff: handoff!,
        lazyBuild: lazyBuild!,
        floor: floors[i]!,
        steps: await measureHandoff({ ...diagnostic, steps: true }),
        prewarmed: await measureHandoff({ ...diagnostic, steps: true, prewarm: true }),
        eagerCompile: await measureHandoff({ ...diagnostic, execArgv: ['--no-lazy'] }),
        pregrown:
          listeners > 200 ? await measureHandoff({ ...diagnostic, pregrow: true }) : undefined,
      });
    }
    importTime = await measureImport(lazyRoot, plan.importRuns);
  } finally {
    removeTempDir(lazyRoot);
    removeTempDir(hintedRoot);
  }
  const profiles: HandoffProfile[] = [];
  if (values.profile) {
    for (const listeners of [1, 500])
      profiles.push(await profileHandoff(listeners, plan.profileHandoffs));
  }
  say(handoffReport(sizes, profiles, importTime));
  return { sizes, profiles, importTime };
}

async function coldSection(): Promise<object> {
  say("measuring: the addon's stand-ins for Node's API, cold ...");
  const outcome = await measureColdCalls(plan.cold);
  say(coldCallsReport(outcome));
  return { plan: plan.cold, ...outcome };
}

async function upgradesSection(): Promise<object> {
  say('measuring: upgrades under load ...');
  const variants = [
    await measureUpgrades('drain', plan.upgrades),
    await measureUpgrades('naive', plan.upgrades),
  ];
  say(upgradesReport(variants, plan.upgrades.spacingMs));
  return { plan: plan.upgrades, variants };
}

async function liverollSection(): Promise<object> {
  say('measuring: liveroll ...');
  const proxy = summarizeProxy(await measureProxy(plan.proxy));
  const roll = await measureLiveroll(plan.liveroll);
  say(liverollReport(proxy, plan.proxy, roll));
  return { proxyPlan: plan.proxy, proxy, rollPlan: plan.liveroll, ...roll };
}

async function frontsSection(): Promise<object> {
  say('measuring: HTTP fronts (wrk), direct, nginx and liveroll in both modes ...');
  const outcome = await measureFronts(plan.fronts);
  say(frontReport(outcome));
  return outcome;
}

async function memorySection(): Promise<object> {
  say('measuring: memory ...');
  const memory = await measureMemory(plan.memory);
  say(memoryReport(memory, plan.memory.copies));
  return memory;
}

async function soakSection(): Promise<object> {
  say('measuring: soak ...');
  const soak = await measureSoak(plan.soak);
  say(soakReport(soak));
  return { plan: plan.soak, ...soak };
}

const RUNNERS: Record<Section, () => Promise<object>> = {
  handoff: handoffSection,
  cold: coldSection,
  upgrades: upgradesSection,
  liveroll: liverollSection,
  fronts: frontsSection,
  memory: memorySection,
  soak: soakSection,
};

const machine = describeMachine();
const started = performance.now();
say(`tableroll benchmarks${values.quick ? ' (--quick: few repetitions, a smoke run)' : ''}`);
say(`machine: ${machineLine(machine)}`);
say('All figures below are from this run, on this machine; medians, with p95 where given.\n');
const results: Partial<Record<Section, object>> = {};
for (const name of selected) {
  results[name] = await RUNNERS[name]();
  say('');
}
const durationS = (performance.now() - started) / 1000;
say(`total time ${durationS.toFixed(0)} s`);
if (values.json) {
  const document = {
    note: 'figures from this run, on this machine',
    quick: values.quick,
    date: new Date().toISOString(),
    machine,
    durationS,
    ...results,
  };
  process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
}
process.exit(0);
