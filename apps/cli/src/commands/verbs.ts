/** The verbs of `ferry`, each in src/commands/<module>.ts exporting `run(argv): Promise<number>`. */
export interface Verb {
  summary: string;
  module: string;
  /** What may follow the verb (shell completion offers these). */
  subcommands?: readonly string[];
}

export const VERBS: Record<string, Verb> = {
  'stream inspect': { summary: 'describe a save image: headers, records, pages, vcpus (--json)', module: '../commands/stream-inspect' },
  'stream verify': { summary: 'check a v2 image (libxc, libxl or xl framing, auto-detected) against the spec', module: '../commands/stream-verify' },
  'stream detect': { summary: "tell a legacy image's toolstack width, guest type and format, with reasons (--json)", module: '../commands/stream-detect' },
  'stream convert': { summary: 'convert legacy -> v2 or v2 -> legacy, detecting what it can', module: '../commands/stream-convert' },
  serve: {
    summary: 'run a service: control-plane | control-plane-worker | suspend-store | host-agent',
    module: '../commands/serve',
    subcommands: ['control-plane', 'control-plane-worker', 'suspend-store', 'host-agent'],
  },
  up: { summary: 'run the whole fleet on this machine (what `npm start` does)', module: '../commands/up' },
  hosts: { summary: 'list hosts; drain or set maintenance', module: '../commands/hosts', subcommands: ['list', 'get', 'drain', 'maintenance'] },
  vms: { summary: 'list VMs or show one', module: '../commands/vms', subcommands: ['list', 'get'] },
  migrate: { summary: 'migrate a VM, with a live progress bar', module: '../commands/migrate' },
  suspend: { summary: 'suspend a VM into the suspend-store', module: '../commands/suspend' },
  resume: { summary: 'resume a VM from the suspend-store (its latest checkpoint, or --checkpoint ID)', module: '../commands/resume' },
  checkpoints: { summary: 'list, show, delete or download checkpoints (suspend images)', module: '../commands/checkpoints', subcommands: ['list', 'show', 'delete', 'download'] },
  campaign: { summary: 'plan, start and watch an upgrade campaign', module: '../commands/campaign', subcommands: ['plan', 'start', 'watch', 'get', 'pause', 'resume', 'abort', 'list'] },
  completion: { summary: 'print a shell completion script: ferry completion bash|zsh', module: '../commands/completion', subcommands: ['bash', 'zsh'] },
};
