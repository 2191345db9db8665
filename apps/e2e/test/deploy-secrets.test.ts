/**
 * deploy/ (read, not run: there is no Docker engine or cluster here): no agent is handed the admin
 * token, the agent secret or a Secret shared with the control plane; each reads its own credentials.
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

const SECRETS = /FERRY_ADMIN_TOKEN|FERRY_AGENT_SECRET|\*ferry-env|ferry-secrets|secretRef/;

describe('deploy/ hands agents only their own credentials', () => {
  it('docker-compose: the agents read deploy/credentials/<host>.env and nothing shared', () => {
    const compose = fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
    for (const [svc, host] of [['agent-a', 'host-a'], ['agent-b', 'host-b']]) {
      const block = composeService(compose, svc!);
      expect(block).not.toMatch(SECRETS);
      expect(block).toContain(`env_file: [deploy/credentials/${host}.env]`);
    }
    expect(composeService(compose, 'dashboard')).not.toMatch(SECRETS);
    expect(fs.readFileSync(path.join(REPO_ROOT, '.gitignore'), 'utf8')).toMatch(/^deploy\/credentials\/$/m);
  });

  it('kubernetes: the agent DaemonSet mounts no shared Secret and sources its node\'s agent.env', () => {
    const ds = fs.readFileSync(path.join(REPO_ROOT, 'deploy/k8s/30-host-agent.yaml'), 'utf8').split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n');
    expect(ds).not.toMatch(SECRETS);
    expect(ds).toContain('/etc/ferry/agent.env');
    expect(fs.readFileSync(path.join(REPO_ROOT, 'deploy/k8s/40-dashboard.yaml'), 'utf8')).not.toMatch(/ferry-secrets|FERRY_ADMIN_TOKEN/);
  });

  it('deploy/README.md says how to mint an agent\'s credentials', () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'deploy/README.md'), 'utf8');
    expect(readme).toContain('## Agent credentials');
    expect(readme).toContain('/v1/hosts/$ID/agent-credentials');
    expect(readme).toMatch(/"scopes\\?":\[\\?"read\\?",\\?"write\\?"\]/);
  });
});
