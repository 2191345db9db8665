/** The reference: a bare NestJS (express) endpoint, same framework, no Redis, no auth. */
import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

@Controller()
class BareController {
  @Get('bare') bare() {
    return { items: [], total: 0, limit: 50, offset: 0 };
  }
}
@Module({ controllers: [BareController] })
class BareModule {}

void (async () => {
  const app = await NestFactory.create(BareModule, { logger: ['error'] });
  await app.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
  const addr = app.getHttpServer().address() as { port: number };
  process.stdout.write(`LISTENING ${addr.port}\n`);
})();
