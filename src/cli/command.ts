/** One `extd <name>` subcommand. `run` returns the process exit code. */
export interface Command {
  name: string;
  /** One line for `extd --help`. */
  summary: string;
  /** Full usage text for `extd <name> --help`. */
  usage: string;
  run(argv: string[]): Promise<number>;
}
