// Minimal typings for the parts of jsfive (pure-JS HDF5 reader, no bundled types) that baselines.ts uses.
declare module 'jsfive' {
  export class Dataset {
    readonly shape: number[];
    readonly dtype: unknown;
    readonly attrs: Record<string, unknown>;
    readonly value: ArrayLike<number> | unknown;
  }
  export class Group {
    readonly keys: string[];
    get(path: string): Dataset | Group;
  }
  export class File extends Group {
    constructor(buffer: ArrayBuffer, filename?: string);
  }
}
