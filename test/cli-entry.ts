// Runs the CLI from source (the published bin runs the compiled dist/ copy of the same main).
import { main } from '../src/cli/main.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
