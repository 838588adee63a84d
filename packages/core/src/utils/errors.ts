/**
 * An error caused by the user's input (a file, a flag, an option, a model
 * name), as opposed to a bug. The CLI prints its message as a single line and
 * exits non-zero without a stack trace; library callers can catch it by class.
 * Messages name the input and state the value received and the values allowed.
 *
 * Broken internal invariants (a caller inside extd passing the wrong shape,
 * say) throw a plain Error instead: the CLI reports those as bugs, with their
 * stack trace.
 */
export class ExtdError extends Error {
  /** Always 'ExtdError'. */
  override name = 'ExtdError';
}

export function fail(message: string): never {
  throw new ExtdError(message);
}
