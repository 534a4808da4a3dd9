/** The warnings `--exec` earns at start-up; the command still runs as given. */
import type { Logger } from 'pino';

/**
 * Says what in `--exec` is probably a mistake: no <<PORT>>, or (in direct mode) no leading
 * `exec`, without which LISTEN_PID names the shell rather than the program.
 */
export function checkExecTemplate(exec: string, direct: boolean, log: Logger): void {
  if (!exec.includes('<<PORT>>')) {
    log.warn(
      { exec },
      '--exec has no <<PORT>>: each child must find out by itself which port to listen on',
    );
  }
  if (/^\s*exec\s/.test(exec)) return;
  if (direct) {
    log.warn(
      { exec },
      '--exec does not start with "exec": in direct mode LISTEN_PID names the shell, so a program it forks will not take the socket',
    );
  } else {
    log.info(
      'the child pid logged is the shell running --exec; start --exec with "exec" to make it the program itself',
    );
  }
}
