/**
 * One `extd <name>` subcommand. `run` returns the process exit code. Its
 * one-line summary lives in the registry in main.ts, so `extd --help` needs
 * no command module loaded.
 */
export interface Command {
  name: string;
  /** Full usage text for `extd <name> --help`. */
  usage: string;
  run(argv: string[]): Promise<number>;
}
