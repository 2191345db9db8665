/**
 * Live migration between two `xl` hosts with Xen's own pre-copy: the source agent runs
 * `xl migrate -s '' <dom> '<ferry-xl-transport ...>'`, the target agent `xl migrate-receive -p`, and
 * the agents carry xl's protocol (src/xl/migrate-protocol.ts) between them over the data path's
 * duplex stream. The guest runs during libxc's pre-copy rounds; the agents watch the records go by.
 *
 * Who decides what (docs/jobs.md, "Live migration on xl hosts"):
 *  - Before the whole stream is through, any failure (link, cancel, a bad record) closes xl's
 *    transport: xl migrate's write fails, libxl_domain_suspend returns an error, and xl takes its
 *    `failed_resume` path (libxl_domain_resume with suspend_cancel) — the guest runs on here; during
 *    pre-copy it was never suspended at all.
 *  - The target commits with the control plane when migrate-receive says READY (domain built,
 *    paused, stream verified), and only then passes READY on. So READY at the source means
 *    committed: from there the source never lets xl see a failure (it would resume the guest while
 *    the target owns it); without a link it plays the rest of the target's part itself.
 *  - The stream through but no READY (link lost, cancel): the control plane's `resolve` says whether
 *    the target committed; xl gets READY (committed: it destroys its copy) or a closed transport
 *    (aborted: it resumes the guest).
 *  - The target, once committed, hands migrate-receive GO itself if the source's GO does not come.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { XL_GO, XL_READY, XL_REPORT, XlProtocolError, expectMessage, readExactly } from '../xl/migrate-protocol';

/** The transport program xl runs (plain Node; shipped with the agent). */
export const XL_TRANSPORT = path.resolve(__dirname, '../../bin/ferry-xl-transport');

/** How long a committed target waits for the source's GO before giving migrate-receive its own. */
export const GO_WAIT_MS = 30_000;

/** Writes one chunk; resolves once it is handed on (the backpressure), rejects if the stream is gone. */
export function writeTo(w: Writable, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (w.destroyed || w.writableEnded) return reject(new XlProtocolError('the stream is closed'));
    w.write(chunk, (e) => (e ? reject(e) : resolve()));
  });
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * A private Unix socket for one `xl migrate`: the transport program connects to it and presents the
 * one-time token; the first connection that does is the transport, any other is dropped.
 */
export class TransportSocket {
  private server: net.Server | null = null;
  private dir = '';
  readonly token = randomBytes(24).toString('hex');
  private resolveConn!: (s: net.Socket) => void;
  readonly connected = new Promise<net.Socket>((r) => (this.resolveConn = r));

  async listen(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-xl-')); // 0700: only this user connects
    const server = net.createServer((s) => this.onConnection(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path.join(this.dir, 'transport.sock'), () => resolve());
    });
  }

  /** The command xl runs with `sh -c`. */
  command(): string {
    return `exec ${shellQuote(process.execPath)} ${shellQuote(XL_TRANSPORT)} ${shellQuote(path.join(this.dir, 'transport.sock'))}`;
  }

  private onConnection(s: net.Socket): void {
    s.on('error', () => undefined);
    const want = Buffer.from(this.token + '\n');
    readExactly(s, want.length, 'transport token').then(
      (got) => (got.equals(want) ? this.resolveConn(s) : s.destroy()),
      () => s.destroy(),
    );
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** The target's answers after READY, as the source passes them to xl. */
export async function relayReport(link: Readable, xl: Writable): Promise<number> {
  await expectMessage(link, XL_REPORT, 'report from the target');
  const rc = (await readExactly(link, 1, 'status from the target'))[0]!;
  await writeTo(xl, Buffer.concat([XL_REPORT, Buffer.from([rc])]));
  if (rc !== 0) await writeTo(xl, await expectMessage(link, XL_GO, 'the target giving the domain back'));
  return rc;
}

/** The target's part from READY on, played by the source when the link is gone after the commit. */
export async function playCommittedTarget(xl: Duplex, done: { ready: boolean; go: boolean }): Promise<void> {
  if (!done.ready) await writeTo(xl, XL_READY);
  if (!done.go) await expectMessage(xl, XL_GO, 'GO from xl migrate');
  await writeTo(xl, Buffer.concat([XL_REPORT, Buffer.from([0])]));
}
