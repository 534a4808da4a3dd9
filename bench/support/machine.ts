/** The machine a benchmark run measured: CPU, cores, memory, kernel, Node. */
import fs from 'node:fs';
import os from 'node:os';

/** What the figures of a run were measured on. */
export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  loadAverage: number[];
}

function cpuModel(): string {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const found = /^model name\s*:\s*(.+)$/m.exec(info);
    if (found) return found[1]!.trim();
  } catch {
    // Not Linux, or no /proc: os.cpus() still knows something.
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

/** Describes this machine now (the load average tells how busy it was when the run began). */
export function describeMachine(): Machine {
  return {
    cpu: cpuModel(),
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** One line for the top of the printed report. */
export function machineLine(m: Machine): string {
  return (
    `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, ${m.kernel}, Node ${m.node}, ` +
    `load average ${m.loadAverage.join(' ')} at the start`
  );
}
