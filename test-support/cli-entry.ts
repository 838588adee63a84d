// Runs the CLI from source (the published bin runs the compiled dist/ copy of the same main).
import { main } from 'extd/cli/main';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
