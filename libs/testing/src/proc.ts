import { readFileSync } from 'node:fs';

/** CPU seconds (user + system) a process has used so far, from Linux /proc (clock ticks: USER_HZ is 100); NaN elsewhere. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}
