/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against the real
 * stack started by `ferry up`: start a migration and watch it reach done; start a campaign from its
 * plan; inspect a legacy 32-bit save file in the page. Screenshots of the main views go to
 * test-artifacts/screenshots/.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CampaignDto, CheckpointDto, OperationDto, VmDto } from '@ferry/contracts';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, alive, call, list, redisUnavailable, startStack, waitUntil, type Stack } from './stack';

const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const SHOTS = path.join(REPO_ROOT, 'test-artifacts', 'screenshots');
const VIEWER_TOKEN = 'dashboard-viewer-token-0001';
const LEGACY_32 = path.join(REPO_ROOT, 'libs/stream-codec/test/legacy/golden/pv32-w32-libxc.legacy');

const skip = !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (set FERRY_CHROMIUM)` : redisUnavailable();
if (skip && process.env.FERRY_REQUIRE_SERVICES === '1') throw new Error(`[dashboard browser tests] required (FERRY_REQUIRE_SERVICES=1): ${skip}`);
if (skip) console.log(`[dashboard browser tests] skipped: ${skip}`);

describe.skipIf(skip !== null)('dashboard in Chromium against the real stack', () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];

  const shot = async (name: string): Promise<void> => {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  };

  beforeAll(async () => {
    stack = await startStack({ via: 'node', args: ['--quiet'], env: { FERRY_API_TOKENS: `viewer:${VIEWER_TOKEN}` } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    // The URL `ferry up` prints: the token rides in ?token= and moves to sessionStorage.
    await page.goto(`${stack.url}/?token=${encodeURIComponent(stack.token)}`);
    await page.locator('[data-testid=sse-status].live').waitFor({ timeout: 30_000 });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    if (stack) {
      await stack.stop();
      for (const pid of stack.pids.values()) expect(alive(pid)).toBe(false);
      fs.rmSync(stack.stateDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('asks for a token when there is none, refuses a wrong one and accepts a pasted one', async () => {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(stack.url);
    await p.fill('[data-testid=token-input]', 'not-the-token-123');
    await p.click('[data-testid=signin]');
    await p.locator('.signin .error').waitFor();
    expect(await p.locator('.signin .error').innerText()).toMatch(/401/);
    await p.fill('[data-testid=token-input]', stack.token);
    await p.click('[data-testid=signin]');
    await p.locator('[data-testid=sse-status].live').waitFor({ timeout: 30_000 });
    await ctx.close();
  });

  it('offers a viewer no actions (GET /v1/me), and the admin every one', async () => {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(`${stack.url}/?token=${VIEWER_TOKEN}`);
    await p.locator('[data-testid=sse-status].live').waitFor({ timeout: 30_000 });
    await p.locator('[data-testid^=vm-]').nth(3).waitFor();
    await p.waitForFunction(() => document.querySelector('[data-testid=role]')?.textContent === 'viewer');
    expect(await p.locator('[data-testid^=migrate-]').count()).toBe(0);
    expect(await p.locator('.host-actions').count()).toBe(0);
    await ctx.close();
    await page.waitForFunction(() => document.querySelector('[data-testid=role]')?.textContent === 'admin');
    await page.locator('[data-testid^=migrate-]').first().waitFor();
  });

  it('signs in from the printed URL and shows the fleet grouped by toolstack', async () => {
    expect(page.url()).not.toContain('token=');
    expect(await page.evaluate(() => sessionStorage.getItem('ferry.token'))).toBe(stack.token);
    await page.locator('[data-testid^=host-]').nth(3).waitFor();
    await page.locator('[data-testid^=vm-]').nth(11).waitFor();
    const groups = await page.locator('.group h2').allInnerTexts();
    expect(groups.some((g) => g.startsWith('32-bit · legacy stream'))).toBe(true);
    expect(groups.some((g) => g.startsWith('64-bit · v2 stream'))).toBe(true);
    await shot('fleet');
  });

  it('starts a migration and watches it reach done, live', async () => {
    await page.click('[data-testid=migrate-db-1]');
    await page.selectOption('[data-testid=migrate-target]', 'xen-d');
    await page.click('[data-testid=migrate-submit]');
    await page.waitForURL(/#\/migrations/);
    const card = page.locator('[data-testid^=migration-][data-vm=db-1]').first();
    await card.waitFor({ timeout: 15_000 });
    // Seen moving (progress from SSE) unless it was quicker than a frame.
    await page
      .locator('[data-testid^=migration-][data-vm=db-1]:is([data-phase=precopy],[data-phase=stop-copy],[data-phase=verifying])')
      .first()
      .waitFor({ timeout: 60_000 })
      .then(() => shot('migration-progress'))
      .catch(() => undefined);
    await page.locator('[data-testid^=migration-][data-vm=db-1][data-phase=completed]').first().waitFor({ timeout: 180_000 });
    await shot('migrations');
    await page.click('[data-testid=nav-fleet]');
    await page.locator('[data-testid=host-xen-d] [data-testid=vm-db-1]').waitFor({ timeout: 15_000 });
  }, 240_000);

  it('starts a campaign from its dry-run plan and follows it to completed', async () => {
    await page.click('[data-testid=nav-campaigns]');
    await page.selectOption('[data-testid=campaign-scope]', 'bitness:32');
    await page.click('[data-testid=campaign-plan]');
    await page.locator('[data-testid=plan] table').waitFor({ timeout: 15_000 });
    expect(await page.locator('[data-testid=plan]').innerText()).toContain('feasible');
    await shot('campaign-plan');
    await page.click('[data-testid=campaign-start]');
    const card = page.locator('[data-testid^=campaign-][data-state]').first();
    await card.waitFor({ timeout: 15_000 });
    await page
      .locator('[data-testid^=campaign-host-]:is([data-state=draining],[data-state=upgrading],[data-state=refilling],[data-state=awaiting-return])')
      .first()
      .waitFor({ timeout: 60_000 })
      .then(() => shot('campaign-running'))
      .catch(() => undefined);
    await page.locator('[data-testid^=campaign-][data-state=completed]').first().waitFor({ timeout: 600_000 });
    await shot('campaigns');
    const c = (await list<CampaignDto>(stack, '/v1/campaigns'))[0]!;
    expect(c.state).toBe('completed');
    // the card says how long it took, and each host's step its own time
    expect(await page.locator(`[data-testid=campaign-timing-${c.id}]`).innerText()).toMatch(/took \d/);
    for (const h of c.hosts) expect(await page.locator(`[data-testid=campaign-${c.id}] [data-testid=step-time-${h.hostId}]`).innerText()).toMatch(/^\d/);
    await page.click('[data-testid=nav-fleet]');
    await waitUntil('no 32-bit group left', async () => !(await page.locator('.group h2').allInnerTexts()).some((g) => g.startsWith('32-bit')), 30_000, 500);
    await shot('fleet-after-campaign');
  }, 720_000);

  it('inspects a legacy 32-bit save file in the browser without uploading it', async () => {
    await page.click('[data-testid=nav-inspector]');
    const uploads: string[] = [];
    page.on('request', (r) => {
      if (r.method() !== 'GET') uploads.push(`${r.method()} ${r.url()}`);
    });
    await page.setInputFiles('[data-testid=inspect-file]', LEGACY_32);
    await page.locator('[data-testid=detected-width][data-width="32"]').waitFor({ timeout: 30_000 });
    const text = await page.locator('[data-testid=inspect-result]').innerText();
    expect(text).toMatch(/legacy/i);
    expect(text).toMatch(/32-bit toolstack/);
    await page.locator('[data-testid=inspect-records] tbody tr').first().waitFor();
    expect(uploads).toEqual([]);
    await shot('inspector');
  }, 60_000);

  it('shows the throughput chart', async () => {
    await page.click('[data-testid=nav-migrations]');
    await page.locator('[data-testid=throughput-chart] svg path.line').waitFor({ timeout: 10_000 });
  });

  it('shows checkpoints from the control plane: retention, download, resume from any, delete', async () => {
    await page.click('[data-testid=nav-checkpoints]');
    await page.locator('[data-testid=checkpoints]').waitFor();
    await page.locator('[data-testid=retention-policy]').waitFor({ timeout: 15_000 });
    expect(await page.locator('[data-testid=retention-policy]').innerText()).toBe('Store retention: none (checkpoints are kept until deleted).');

    // Two checkpoints of mon-1 (REST, as the CLI would): suspend, resume, suspend; the view follows the events.
    const opDone = (id: string) => waitUntil(`operation ${id}`, async () => (await call<OperationDto>(stack, 'GET', `/v1/operations/${id}`)).state === 'completed', 90_000, 250);
    await opDone((await call<OperationDto>(stack, 'POST', '/v1/vms/mon-1/suspend', {})).id);
    await opDone((await call<OperationDto>(stack, 'POST', '/v1/vms/mon-1/resume', {})).id);
    await opDone((await call<OperationDto>(stack, 'POST', '/v1/vms/mon-1/suspend', {})).id);
    const [newer, older] = await list<CheckpointDto>(stack, '/v1/checkpoints?vm=mon-1');
    await page.locator(`[data-testid=checkpoint-${older!.id}]`).waitFor({ timeout: 30_000 });
    await page.locator(`[data-testid=checkpoint-${newer!.id}]`).waitFor({ timeout: 30_000 });
    await page.selectOption('[data-testid=checkpoints-vm]', 'mon-1');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=checkpoints] tbody tr').length === 2);
    const row = page.locator(`[data-testid=checkpoint-${older!.id}]`);
    expect(await row.innerText()).toMatch(/v2 \w+/);
    expect(await page.locator(`[data-testid=retention-${older!.id}]`).getAttribute('title')).toBe('kept until deleted (the store has no retention policy)');
    await shot('checkpoints');

    // Download: the browser's own download through a signed link, the bytes the store holds.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(`[data-testid=download-${older!.id}]`)]);
    expect(download.suggestedFilename()).toBe(`${older!.id}.v2`);
    const file = await download.path();
    expect(createHash('sha256').update(fs.readFileSync(file)).digest('hex')).toBe(older!.image!.sha256);

    // Resume from the older checkpoint (not the latest), on a host the dialog offers.
    await page.click(`[data-testid=resume-${older!.id}]`);
    await page.click('[data-testid=resume-submit]');
    const ops = await waitUntil('the resume', async () => (await list<OperationDto>(stack, '/v1/operations?limit=20')).find((o) => o.kind === 'resume' && o.checkpointId === older!.id), 30_000, 250);
    await opDone(ops.id);
    await waitUntil('mon-1 running', async () => (await call<VmDto>(stack, 'GET', '/v1/vms/mon-1')).state === 'running', 30_000, 250);

    // Delete, after a confirm.
    page.once('dialog', (d) => void d.accept());
    await page.click(`[data-testid=delete-${newer!.id}]`);
    await page.locator(`[data-testid=checkpoint-${newer!.id}]`).waitFor({ state: 'detached', timeout: 30_000 });
    expect((await fetch(`${stack.url}/v1/checkpoints/${newer!.id}`, { headers: { authorization: `Bearer ${stack.token}` } })).status).toBe(404);
    expect(consoleErrors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
  }, 240_000);
});
