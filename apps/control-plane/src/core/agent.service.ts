import { Injectable } from '@nestjs/common';
import type { AgentReport, HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, ReportsResponse } from '@ferry/contracts';
import { HostsService } from './hosts.service';
import { MigrationsService } from './migrations.service';
import { OperationsService } from './operations.service';

/** The agent-facing side: register, heartbeat, reports. Routes reports to migrations or operations. */
@Injectable()
export class AgentService {
  constructor(
    private readonly hosts: HostsService,
    private readonly migrations: MigrationsService,
    private readonly operations: OperationsService,
  ) {}

  async register(req: RegisterRequest): Promise<RegisterResponse> {
    await this.migrations.repairFromInventory(req.hostId, req.inventory.guests);
    return this.hosts.register(req);
  }

  private async terminal(id: string): Promise<boolean> {
    return (await this.migrations.isTerminal(id)) || (await this.operations.isTerminal(id));
  }

  async heartbeat(hostId: string, req: HeartbeatRequest): Promise<HeartbeatResponse> {
    // before the inventory is folded in: it still shows which records a migration left unsettled
    await this.migrations.repairFromInventory(hostId, req.inventory.guests);
    return this.hosts.heartbeat(hostId, req, (id) => this.terminal(id));
  }

  async reports(hostId: string, reports: AgentReport[]): Promise<ReportsResponse> {
    const cancel = new Set<string>();
    for (const r of reports) {
      if (r.job === 'cancel') continue;
      if (r.job === 'migrate-send' || r.job === 'migrate-receive') await this.migrations.onReport(hostId, r);
      else await this.operations.onReport(hostId, r);
      if (r.type === 'progress' && (await this.terminal(r.operationId))) cancel.add(r.operationId);
    }
    return { accepted: reports.length, cancelOperations: [...cancel] };
  }
}
