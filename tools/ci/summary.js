#!/usr/bin/env node
'use strict';
// Prints the plain closing line CI readers look for: "tests: N passed, N failed, N skipped".
// A test file that fails outside its tests (an import error, a missing file, a throwing hook) has
// no failed test of its own, so vitest's numFailedTests leaves it out; each such file counts as one
// failure here and is named. An error vitest caught outside every test (an unhandled rejection, an
// EPIPE) leaves the report saying success but makes vitest exit non-zero: given that exit code
// (`--exit-code N`), such a run counts as one failure too. Exits 1 when anything failed or the report
// is missing.
const fs = require('node:fs');
const path = require('node:path');

/** @param {any} r vitest's json report */
function summarize(r, exitCode = 0) {
  const files = Array.isArray(r.testResults) ? r.testResults : [];
  const broken = files.filter(
    (f) => f.status === 'failed' && !(f.assertionResults || []).some((a) => a.status === 'failed'),
  );
  const counted = (r.numFailedTests || 0) + broken.length;
  const outside = exitCode !== 0 && counted === 0;
  const failed = counted + (outside ? 1 : 0);
  const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
  let line = `tests: ${r.numPassedTests || 0} passed, ${failed} failed, ${skipped} skipped`;
  if (broken.length) {
    const names = broken.map((f) => path.relative(process.cwd(), f.name) || f.name);
    line += ` (${broken.length} file${broken.length > 1 ? 's' : ''} failed outside a test: ${names.join(', ')})`;
  }
  if (outside) line += ` (vitest exited ${exitCode}: an error outside every test, see its "Unhandled Errors")`;
  return { line, failed: failed > 0 || r.success === false };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--exit-code');
  const exitCode = at >= 0 ? Number(args.splice(at, 2)[1]) || 0 : 0;
  const file = args[0] || 'test-artifacts/vitest.json';
  let r;
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.log(`tests: no report (${file}: ${e instanceof Error ? e.message : String(e)}), counted as failed`);
    process.exit(1);
  }
  const s = summarize(r, exitCode);
  console.log(s.line);
  process.exit(s.failed ? 1 : 0);
}

module.exports = { summarize };
