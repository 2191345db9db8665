/**
 * deploy/, read as text (`npm run deploy:check` builds and runs it): no agent is handed the admin
 * token, the agent secret, the S3 keys or another host's credential; each reads its own.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './stack';

/** The lines of one top-level service of a compose file (two-space indented key, up to the next one). */
function composeService(text: string, name: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l === `  ${name}:`);
  expect(start, `service ${name}`).toBeGreaterThan(0);
  const end = lines.findIndex((l, i) => i > start && /^ {0,2}\S/.test(l));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

const SHARED = /FERRY_ADMIN_TOKEN|FERRY_AGENT_SECRET|S3_SECRET_ACCESS_KEY|S3_ACCESS_KEY_ID|ferry-control-plane|ferry-suspend-store/;

describe('deploy/ hands agents only their own credentials', () => {
  it('docker-compose: each agent sources its own minted credential and nothing shared', () => {
    const compose = fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
    for (const [svc, other] of [['agent-a', 'agent-b'], ['agent-b', 'agent-a']]) {
      const block = composeService(compose, svc!);
      expect(block).not.toMatch(SHARED);
      expect(block).toContain('. /run/ferry/agent.env');
      expect(block).toContain(`${svc}-credentials:/run/ferry:ro`);
      expect(block).not.toContain(`${other}-credentials`);
    }
    expect(composeService(compose, 'dashboard')).not.toMatch(/FERRY_AGENT_SECRET|S3_SECRET_ACCESS_KEY/);
  });

  it("kubernetes: each sim agent reads only its own Secret", () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'deploy/k8s/30-sim-agents.yaml'), 'utf8');
    const docs = text.split(/^---$/m).filter((d) => /kind: StatefulSet/.test(d));
    expect(docs.length).toBeGreaterThanOrEqual(2);
    for (const d of docs) {
      const body = d.split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n');
      const host = /name: FERRY_HOST_ID, value: ([\w-]+)/.exec(body)?.[1];
      expect(host).toBeTruthy();
      expect(body).not.toMatch(SHARED);
      expect([...body.matchAll(/secretRef: \{ name: ([\w-]+) \}/g)].map((m) => m[1])).toEqual([`ferry-agent-${host}`]);
    }
  });

  it("deploy/README.md says how to mint an agent's credentials", () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'deploy/README.md'), 'utf8');
    expect(readme).toContain('/agent-credentials');
    expect(readme).toMatch(/read\+write|"read", ?"write"/);
  });
});
