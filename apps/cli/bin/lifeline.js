'use strict';
// Preloaded (`node -r <this file> ...`) into the services `ferry up` and `ferry serve` start with an
// IPC channel. The channel closes when the parent exits, however it goes (kill -9 included): the
// service then gets SIGTERM, so it stops as it would for a supervisor, and if it is still there
// 10 s later it exits. The channel carries no messages and never keeps the service alive.
if (process.channel) {
  process.once('disconnect', () => {
    setTimeout(() => process.exit(1), 10_000).unref();
    process.kill(process.pid, 'SIGTERM');
  });
  process.channel.unref();
}
