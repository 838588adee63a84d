/**
 * `npm run demo`: build the demo page and serve it on localhost until Ctrl-C.
 *   npm run demo -- --port 8080 --no-build
 */
import { startDemoServer, DEMO_SERVER_DEFAULTS } from './demo-server.js';

const args = process.argv.slice(2);
const portIndex = args.indexOf('--port');
const port = portIndex >= 0 ? Number(args[portIndex + 1]) : DEMO_SERVER_DEFAULTS.port;
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be an integer 0..65535, got ${args[portIndex + 1]}`);
  process.exit(2);
}

const server = await startDemoServer({ port, skipBuild: args.includes('--no-build') });
console.log(`\nEXTD demo: ${server.url}\n(Ctrl-C to stop)`);
const stop = () => server.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
