/**
 * A client generated from the served OpenAPI document (openapi-typescript) type-checks against the
 * real API's types: the generated Host, Vm, Operation, Migration and Problem are assignable both ways
 * to the DTOs of libs/contracts, and the page and error answers of a collection have the shape the
 * typed client reads. The check is a TypeScript compile of the generated file and a probe.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { World } from './harness';

const w = new World();
let url = '';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-openapi-'));
const CONTRACTS = path.resolve(__dirname, '../../../libs/contracts/src/index.ts');

beforeAll(async () => {
  url = (await w.cp()).url;
});
afterAll(async () => {
  await w.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const PROBE = `
import type { components, paths } from './api';
import type { CampaignDto, CampaignPlanDto, HostDto, MigrationDto, OperationDto, Page, Problem, VmDto } from ${JSON.stringify(CONTRACTS.replace(/\\.ts$/, ''))};
type S = components['schemas'];
const both = <A, B extends A>(_a: A, _b: B): void => undefined;
declare const h: HostDto, gh: S['Host'], v: VmDto, gv: S['Vm'], o: OperationDto, go: S['Operation'], m: MigrationDto, gm: S['Migration'], p: Problem, gp: S['Problem'];
both<HostDto, S['Host']>(h, gh); both<S['Host'], HostDto>(gh, h);
both<VmDto, S['Vm']>(v, gv); both<S['Vm'], VmDto>(gv, v);
both<OperationDto, S['Operation']>(o, go); both<S['Operation'], OperationDto>(go, o);
both<MigrationDto, S['Migration']>(m, gm); both<S['Migration'], MigrationDto>(gm, m);
both<Problem, S['Problem']>(p, gp);
declare const c: CampaignDto, gc: S['Campaign'], cp: CampaignPlanDto, gcp: S['CampaignPlan'];
both<CampaignDto, S['Campaign']>(c, gc); both<S['Campaign'], CampaignDto>(gc, c);
both<CampaignPlanDto, S['CampaignPlan']>(cp, gcp); both<S['CampaignPlan'], CampaignPlanDto>(gcp, cp);
type HostsPage = paths['/v1/hosts']['get']['responses'][200]['content']['application/json'];
declare const page: HostsPage;
const typed: Page<HostDto> = page;
type MigrationsQuery = NonNullable<paths['/v1/migrations']['get']['parameters']['query']>;
const q: MigrationsQuery = { limit: 10, cursor: 'c10', phase: 'queued', active: 'true' };
type NotFound = paths['/v1/vms/{id}']['get']['responses'][404]['content']['application/problem+json'];
declare const nf: NotFound;
const detail: string = nf.detail;
type Created = paths['/v1/migrations']['post']['responses'][202]['headers']['Location'];
export { typed, q, detail };
export type { Created };
`;

it('the generated client type-checks against the contracts', async () => {
  const doc = (await (await fetch(`${url}/docs/openapi.json`)).json()) as Record<string, unknown>;
  fs.writeFileSync(path.join(dir, 'api.ts'), astToString(await openapiTS(doc as never)));
  fs.writeFileSync(path.join(dir, 'probe.ts'), PROBE);
  const program = ts.createProgram([path.join(dir, 'probe.ts')], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, skipLibCheck: true, types: ['node'] });
  const errors = ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? path.basename(d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  expect(errors).toEqual([]);
}, 60_000);
