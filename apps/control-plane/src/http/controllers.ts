import { Body, Controller, Delete, Get, Header, Headers, HttpCode, Inject, Param, Post, Query, Req, Res, Sse } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import type Redis from 'ioredis';
import { Observable } from 'rxjs';
import {
  nextOffsetCursor,
  type AgentReport,
  type CampaignDto,
  type CreateCampaignRequest,
  type CreateMigrationRequest,
  type HeartbeatRequest,
  type HostJobName,
  type MigrationDto,
  type OperationDto,
  type RegisterRequest,
} from '@ferry/contracts';
import { HostJobProducer } from '@ferry/queue';
import { CP_CONFIG, REDIS, type CpConfig } from '../config';
import { AgentService } from '../core/agent.service';
import { CampaignsService } from '../core/campaigns.service';
import { DrainService } from '../core/drain.service';
import { HostsService } from '../core/hosts.service';
import { MetricsService } from '../core/metrics.service';
import { MigrationsService } from '../core/migrations.service';
import { OperationsService } from '../core/operations.service';
import { HostsRepository, MigrationsRepository } from '../core/repos';
import { AgentOnly, Public, Roles, type AuthedRequest } from './auth';
import { EventsHub, type SseMessage } from './events.hub';
import * as S from './schemas';
import { QueryPipe, ZodPipe, parse, z } from './validation';
import { QueryDoc, jsonSchema } from './openapi';
import { Acting } from './acting';
import { newId } from '../core/redis';

const body = (schema: z.ZodTypeAny) => ApiBody({ schema: jsonSchema(schema) });
/** A suspend or resume answers with its operation, found at /v1/operations/{id}. */
const toOperation = { location: (o: OperationDto) => `/v1/operations/${encodeURIComponent(o.id)}` };

@ApiTags('hosts')
@ApiBearerAuth()
@Controller('v1/hosts')
export class HostsController {
  constructor(
    private readonly hosts: HostsService,
    private readonly drains: DrainService,
  ) {}
  @Get() @Roles('viewer') @QueryDoc(S.hostQuery) async list(@Query(new QueryPipe(S.hostQuery)) q: z.output<typeof S.hostQuery>) {
    const all = await this.hosts.list();
    return S.pageOf(q.state ? all.filter((h) => h.state === q.state) : all, q);
  }
  @Get(':id') @Roles('viewer') get(@Param('id', new ZodPipe(S.hostId, 'id')) id: string) {
    return this.hosts.get(id);
  }
  @Post(':id/drain') @HttpCode(200) @Roles('operator') @Acting() @body(S.drain) @ApiOperation({ summary: 'stop placing work on the host; evacuate (default) queues a live migration per VM' })
  drain(@Param('id', new ZodPipe(S.hostId, 'id')) id: string, @Body(new ZodPipe(S.drain)) b: z.output<typeof S.drain>) {
    return this.drains.drain(id, b.evacuate ?? true);
  }
  @Delete(':id/drain') @Roles('operator') undrain(@Param('id', new ZodPipe(S.hostId, 'id')) id: string) {
    return this.hosts.setFlag(id, 'draining', false);
  }
  @Post(':id/agent-credentials') @HttpCode(200) @Roles('admin')
  @ApiOperation({ summary: "mint the agent's token and (re)create its Redis ACL user limited to its own queue" })
  credentials(@Param('id', new ZodPipe(S.hostId, 'id')) id: string) {
    return this.hosts.agentCredentials(id);
  }
  @Post(':id/maintenance') @HttpCode(200) @Roles('operator') @Acting() @body(S.maintenance)
  maintenance(@Param('id', new ZodPipe(S.hostId, 'id')) id: string, @Body(new ZodPipe(S.maintenance)) b: z.output<typeof S.maintenance>) {
    return this.hosts.setFlag(id, 'maintenance', b.enabled);
  }
}

@ApiTags('vms')
@ApiBearerAuth()
@Controller('v1/vms')
export class VmsController {
  constructor(
    private readonly hosts: HostsService,
    private readonly ops: OperationsService,
  ) {}
  @Get() @Roles('viewer') @QueryDoc(S.vmQuery) async list(@Query(new QueryPipe(S.vmQuery)) q: z.output<typeof S.vmQuery>) {
    const r = await this.hosts.listVms(q);
    return { ...r, limit: q.limit, nextCursor: nextOffsetCursor(q.offset, r.items.length, r.total) };
  }
  @Get(':id') @Roles('viewer') get(@Param('id', new ZodPipe(S.vmId, 'id')) id: string) {
    return this.hosts.getVm(id);
  }
  @Post(':id/suspend') @HttpCode(202) @Roles('operator') @Acting(toOperation) @body(S.suspendBody) @ApiOperation({ summary: 'suspend the VM into the suspend-store' })
  suspend(@Param('id', new ZodPipe(S.vmId, 'id')) id: string, @Body(new ZodPipe(S.suspendBody)) _b: unknown) {
    return this.ops.suspend(id);
  }
  @Post(':id/resume') @HttpCode(202) @Roles('operator') @Acting(toOperation) @body(S.resumeBody)
  @ApiOperation({ summary: 'resume a suspended VM from its latest checkpoint, or from checkpointId (any of its checkpoints); host picked when absent' })
  resume(@Param('id', new ZodPipe(S.vmId, 'id')) id: string, @Body(new ZodPipe(S.resumeBody)) b: z.output<typeof S.resumeBody>) {
    return this.ops.resume(id, b.host, null, undefined, b.checkpointId);
  }
}

@ApiTags('operations')
@ApiBearerAuth()
@Controller('v1/operations')
export class OperationsController {
  constructor(private readonly ops: OperationsService) {}
  @Get() @Roles('viewer') @QueryDoc(S.pageSchema) list(@Query(new QueryPipe(S.pageSchema)) q: z.output<typeof S.pageSchema>) {
    return this.ops.list(q.limit, q.offset);
  }
  @Get(':id') @Roles('viewer') get(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.ops.get(id);
  }
}

@ApiTags('migrations')
@ApiBearerAuth()
@Controller('v1/migrations')
export class MigrationsController {
  constructor(private readonly migrations: MigrationsService) {}
  @Post() @HttpCode(202) @Roles('operator') @Acting<MigrationDto>({ location: (m) => `/v1/migrations/${encodeURIComponent(m.id)}`, idempotency: 'service' }) @body(S.createMigration)
  @ApiOperation({ summary: 'queue a migration (202); the scheduler picks a target when none is given' })
  async create(@Headers('idempotency-key') key: string | undefined, @Body(new ZodPipe(S.createMigration)) b: CreateMigrationRequest) {
    // without a key the request is keyed by itself alone: a retry makes a second migration (or a 409)
    return (await this.migrations.create(b, key ?? newId('idem'))).migration;
  }
  @Get() @Roles('viewer') @QueryDoc(S.migrationQuery) async list(@Query(new QueryPipe(S.migrationQuery)) q: z.output<typeof S.migrationQuery>, @Res({ passthrough: true }) res: { type(t: string): unknown }) {
    const raw = await this.migrations.listRaw(q);
    if (raw === null) return this.migrations.list(q);
    res.type('application/json');
    return raw;
  }
  @Get(':id') @Roles('viewer') get(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.migrations.get(id);
  }
  @Post(':id/cancel') @HttpCode(200) @Roles('operator') @Acting() @ApiOperation({ summary: 'cancel before the point of no return (409 after it or once finished; 200 unchanged when already cancelled)' })
  cancel(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.migrations.cancel(id);
  }
}

@ApiTags('campaigns')
@ApiBearerAuth()
@Controller('v1/campaigns')
export class CampaignsController {
  constructor(private readonly campaigns: CampaignsService) {}
  @Post('plan') @HttpCode(200) @Roles('viewer') @body(S.createCampaign) @ApiOperation({ summary: 'the full plan and every blocker; moves nothing' })
  plan(@Body(new ZodPipe(S.createCampaign)) b: CreateCampaignRequest) {
    return this.campaigns.plan(b);
  }
  @Post() @HttpCode(201) @Roles('admin') @Acting<CampaignDto>({ location: (c) => `/v1/campaigns/${encodeURIComponent(c.id)}` }) @body(S.createCampaign)
  create(@Body(new ZodPipe(S.createCampaign)) b: CreateCampaignRequest) {
    return this.campaigns.create(b);
  }
  @Get() @Roles('viewer') @QueryDoc(S.pageSchema) list(@Query(new QueryPipe(S.pageSchema)) q: z.output<typeof S.pageSchema>) {
    return this.campaigns.list(q.limit, q.offset);
  }
  @Get(':id') @Roles('viewer') get(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.campaigns.get(id);
  }
  @Post(':id/pause') @HttpCode(200) @Roles('operator') @Acting() pause(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.campaigns.control(id, 'pause');
  }
  @Post(':id/resume') @HttpCode(200) @Roles('operator') @Acting() resume(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.campaigns.control(id, 'resume');
  }
  @Post(':id/abort') @HttpCode(200) @Roles('admin') @Acting() abort(@Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.campaigns.control(id, 'abort');
  }
}

@ApiTags('agents')
@ApiBearerAuth()
@Controller('v1/agents')
export class AgentsController {
  constructor(
    private readonly agents: AgentService,
    private readonly migrations: MigrationsService,
  ) {}
  @Post('register') @HttpCode(200) @AgentOnly() @body(S.register) register(@Body(new ZodPipe(S.register)) b: RegisterRequest) {
    return this.agents.register(b);
  }
  @Post(':hostId/heartbeat') @HttpCode(200) @AgentOnly() @body(S.heartbeat)
  heartbeat(@Param('hostId', new ZodPipe(S.hostId, 'hostId')) hostId: string, @Body(new ZodPipe(S.heartbeat)) b: HeartbeatRequest) {
    return this.agents.heartbeat(hostId, b);
  }
  @Post(':hostId/reports') @HttpCode(200) @AgentOnly() @body(S.reports)
  reports(@Param('hostId', new ZodPipe(S.hostId, 'hostId')) hostId: string, @Body(new ZodPipe(S.reports)) b: z.output<typeof S.reports>) {
    b.reports.forEach((r, i) => {
      if (r.type === 'completed') parse(S.jobResults[r.job as HostJobName], r.result, `reports.${i}.result`);
    });
    return this.agents.reports(hostId, b.reports as AgentReport[]);
  }
  @Post(':hostId/migrations/:id/commit') @HttpCode(200) @AgentOnly() @body(S.commit)
  commit(@Param('hostId', new ZodPipe(S.hostId, 'hostId')) hostId: string, @Param('id', new ZodPipe(S.anyId, 'id')) id: string, @Body(new ZodPipe(S.commit)) b: z.output<typeof S.commit>) {
    return this.migrations.commit(hostId, id, b);
  }
  @Get(':hostId/migrations/:id/decision') @AgentOnly()
  decision(@Param('hostId', new ZodPipe(S.hostId, 'hostId')) hostId: string, @Param('id', new ZodPipe(S.anyId, 'id')) id: string) {
    return this.migrations.decision(hostId, id);
  }
  @Post(':hostId/migrations/:id/resolve') @HttpCode(200) @AgentOnly() @body(S.resolve)
  resolve(@Param('hostId', new ZodPipe(S.hostId, 'hostId')) hostId: string, @Param('id', new ZodPipe(S.anyId, 'id')) id: string, @Body(new ZodPipe(S.resolve)) b: z.output<typeof S.resolve>) {
    return this.migrations.resolve(hostId, id, b);
  }
}

const eventsQuery = z.object({ entity: z.enum(['host', 'vm', 'migration', 'campaign', 'operation', 'checkpoint']).optional(), id: S.anyId.optional() }).strict();

@ApiTags('events')
@ApiBearerAuth()
@Controller('v1/events')
export class EventsController {
  constructor(
    private readonly hub: EventsHub,
    @Inject(CP_CONFIG) private readonly cfg: CpConfig,
  ) {}
  @Sse() @Roles('viewer') @QueryDoc(eventsQuery)
  @ApiOperation({ summary: 'server-sent events: every state change and progress tick (Last-Event-ID resumes); a `: keep-alive` comment every 15 s' })
  events(
    @Req() req: AuthedRequest & { on(ev: 'close', f: () => void): unknown },
    @Res({ passthrough: true }) res: { write(chunk: string): boolean; writableEnded: boolean },
    @Query(new QueryPipe(eventsQuery)) q: z.output<typeof eventsQuery>,
  ): Observable<SseMessage> {
    // A comment line is ignored by every SSE client; Nest's SSE writer sends whole messages in
    // single writes, so this one never lands inside a message.
    const keepAlive = setInterval(() => {
      if (!res.writableEnded) res.write(': keep-alive\n\n');
    }, this.cfg.FERRY_SSE_KEEPALIVE_MS);
    req.on('close', () => clearInterval(keepAlive));
    const last = req.headers['last-event-id'];
    const lastId = typeof last === 'string' && /^\d+-\d+$/.test(last) ? last : undefined;
    return this.hub.stream(lastId, (e) => (!q.entity || e.entity === q.entity) && (!q.id || e.entityId === q.id));
  }
}

@ApiTags('auth')
@ApiBearerAuth()
@Controller('v1/me')
export class MeController {
  @Get() @Roles('viewer') @ApiOperation({ summary: "the caller's role (viewer, operator or admin): what a UI may offer it" })
  me(@Req() req: AuthedRequest): { role: string } {
    return { role: req.ferryRole ?? 'viewer' };
  }
}

@ApiTags('ops')
@Controller()
export class OpsController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly metrics: MetricsService,
    private readonly migs: MigrationsRepository,
    private readonly hosts: HostsRepository,
    private readonly producer: HostJobProducer,
  ) {}
  @Get('healthz') @Public() healthz() {
    return { status: 'ok', checks: { process: 'ok' } };
  }
  @Get('readyz') @Public() async readyz(@Res({ passthrough: true }) res: { status(code: number): unknown }) {
    try {
      await this.redis.ping();
      return { status: 'ok', checks: { redis: 'ok' } };
    } catch (e) {
      res.status(503);
      return { status: 'error', checks: { redis: e instanceof Error ? e.message : String(e) } };
    }
  }
  @Get('metrics') @Public() @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText() {
    this.metrics.setPhases(await this.migs.countByPhase());
    this.metrics.queueDepth.set({ queue: 'ferry.cp.pending-migrations' }, await this.migs.pendingCount());
    for (const h of await this.hosts.all()) this.metrics.queueDepth.set({ queue: `ferry.host.${h.id}` }, await this.producer.depth(h.id).catch(() => 0));
    return this.metrics.registry.metrics();
  }
}
