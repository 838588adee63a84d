/**
 * An error caused by the user's input (a file, a flag, a model name), as
 * opposed to a bug. The CLI prints its message as a single line and exits
 * non-zero without a stack trace; library callers can catch it by class.
 * Messages name the input and state the value received and the values allowed.
 */
export class ExtdError extends Error {
  override name = 'ExtdError';
}

export function fail(message: string): never {
  throw new ExtdError(message);
}
