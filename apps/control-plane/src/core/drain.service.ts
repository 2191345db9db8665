import { Injectable } from '@nestjs/common';
import type { HostDto } from '@ferry/contracts';
import { HostsService } from './hosts.service';
import { MigrationsService } from './migrations.service';
import { VmsRepository } from './repos';

/** Drain = no new work lands on the host; with evacuate, every VM on it is queued for a live migration. */
@Injectable()
export class DrainService {
  constructor(
    private readonly hosts: HostsService,
    private readonly migrations: MigrationsService,
    private readonly vms: VmsRepository,
  ) {}

  async drain(hostId: string, evacuate: boolean): Promise<HostDto & { migrations: string[] }> {
    const dto = await this.hosts.setFlag(hostId, 'draining', true);
    const ids: string[] = [];
    if (evacuate) {
      const stamp = dto.lastHeartbeatAt ?? dto.registeredAt;
      for (const v of await this.vms.many(await this.vms.idsOnHost(hostId))) {
        if (v.activeOp || v.state === 'suspended' || v.state === 'missing') continue;
        const r = await this.migrations.create({ vm: v.id, mode: 'live' }, `drain.${hostId}.${v.id}.${stamp}`).catch(() => null);
        if (r) ids.push(r.migration.id);
      }
    }
    return { ...dto, migrations: ids };
  }
}
