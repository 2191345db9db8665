import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * tools/ci/summary.js, the line CI ends with. The report below has the shape vitest 4's json reporter
 * writes when one file passes and two fail to load (a missing module, a missing file): vitest counts
 * no failed test for them, so the closing line must.
 */
const SCRIPT = path.resolve(__dirname, '../../../tools/ci/summary.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-ci-summary-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(report: unknown, ...args: string[]): { out: string; code: number } {
  const file = path.join(dir, `r${Math.random().toString(36).slice(2)}.json`);
  if (report !== undefined) fs.writeFileSync(file, JSON.stringify(report));
  try {
    return { out: execFileSync(process.execPath, [SCRIPT, file, ...args], { encoding: 'utf8' }).trim(), code: 0 };
  } catch (e) {
    const err = e as { stdout: string; status: number };
    return { out: err.stdout.trim(), code: err.status };
  }
}

const passed = { name: '/r/a.test.ts', status: 'passed', message: '', assertionResults: [{ status: 'passed' }] };

describe('CI closing line', () => {
  it('counts files that failed to load as failures and names them', () => {
    const r = run({
      numTotalTestSuites: 3,
      numFailedTestSuites: 2,
      numPassedTests: 1,
      numFailedTests: 0,
      numPendingTests: 0,
      numTodoTests: 0,
      success: false,
      testResults: [
        passed,
        { name: '/r/b.test.ts', status: 'failed', message: "Cannot find module './missing-module'", assertionResults: [] },
        { name: '/r/c.test.ts', status: 'failed', message: 'ENOENT: no such file or directory', assertionResults: [] },
      ],
    });
    expect(r.out).toMatch(/^tests: 1 passed, 2 failed, 0 skipped \(2 files failed outside a test: .*b\.test\.ts, .*c\.test\.ts\)$/);
    expect(r.code).toBe(1);
  });

  it('counts a failed test once, not again for its file', () => {
    const r = run({
      numPassedTests: 3,
      numFailedTests: 1,
      numPendingTests: 2,
      success: false,
      testResults: [passed, { name: '/r/d.test.ts', status: 'failed', message: '', assertionResults: [{ status: 'passed' }, { status: 'failed' }] }],
    });
    expect(r.out).toBe('tests: 3 passed, 1 failed, 2 skipped');
    expect(r.code).toBe(1);
  });

  it('a clean run', () => {
    expect(run({ numPassedTests: 5, numFailedTests: 0, numPendingTests: 0, success: true, testResults: [passed] })).toEqual({
      out: 'tests: 5 passed, 0 failed, 0 skipped',
      code: 0,
    });
  });

  it('an error outside every test (vitest exited 1, its report says success) is one failure', () => {
    const r = run({ numPassedTests: 5, numFailedTests: 0, numPendingTests: 0, success: true, testResults: [passed] }, '--exit-code', '1');
    expect(r.out).toMatch(/^tests: 5 passed, 1 failed, 0 skipped \(vitest exited 1: /);
    expect(r.code).toBe(1);
    expect(run({ numPassedTests: 5, numFailedTests: 0, success: true, testResults: [passed] }, '--exit-code', '0').code).toBe(0);
  });

  it('a missing report is a failure, not silence', () => {
    const r = run(undefined);
    expect(r.out).toMatch(/^tests: no report .* counted as failed$/);
    expect(r.code).toBe(1);
  });
});
