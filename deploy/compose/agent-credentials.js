'use strict';
// docker-compose's one-shot `agent-credentials` service: asks the control plane for each agent's own
// credential (POST /v1/hosts/{id}/agent-credentials: its token and a Redis ACL user limited to its
// queue) and writes it as /credentials/<host>/agent.env, in a volume only that agent mounts.
//   node agent-credentials.js host-a host-b
// Env: FERRY_CONTROL_PLANE_URL, FERRY_ADMIN_TOKEN, REDIS_HOSTPORT (host:port the agents reach Redis on).
const fs = require('node:fs');
const path = require('node:path');

async function main() {
  const cp = process.env.FERRY_CONTROL_PLANE_URL;
  const admin = process.env.FERRY_ADMIN_TOKEN;
  const redis = process.env.REDIS_HOSTPORT;
  if (!cp || !admin || !redis) throw new Error('FERRY_CONTROL_PLANE_URL, FERRY_ADMIN_TOKEN and REDIS_HOSTPORT are required');
  for (const host of process.argv.slice(2)) {
    const res = await fetch(`${cp}/v1/hosts/${encodeURIComponent(host)}/agent-credentials`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    if (!res.ok) throw new Error(`${host}: ${res.status} ${await res.text()}`);
    const c = await res.json();
    const q = (v) => `'${String(v).replace(/'/g, `'\\''`)}'`;
    const url = `redis://${encodeURIComponent(c.redisUser)}:${encodeURIComponent(c.redisPassword)}@${redis}`;
    const file = path.join('/credentials', host, 'agent.env');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `export FERRY_AGENT_TOKEN=${q(c.token)}\nexport REDIS_URL=${q(url)}\nexport FERRY_QUEUE_PREFIX=${q(c.queuePrefix)}\n`, { mode: 0o600 });
    fs.chownSync(file, 1000, 1000);
    console.log(`${host}: credential written (Redis user ${c.redisUser})`);
  }
}
main().catch((e) => {
  console.error(`agent-credentials: ${e.message}`);
  process.exit(1);
});
