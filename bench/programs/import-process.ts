/**
 * Prints how long `import('tableroll')` took in this fresh process, and the heap after it: one
 * JSON line `{ event: 'imported', importMs, heapUsed }`. Run from a build's own dist/bench so
 * that 'tableroll' resolves to that build.
 */
const started = performance.now();
await import('tableroll');
const importMs = performance.now() - started;
const { heapUsed } = process.memoryUsage();
process.stdout.write(JSON.stringify({ event: 'imported', importMs, heapUsed }) + '\n');
