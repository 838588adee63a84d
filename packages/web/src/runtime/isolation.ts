/** Whether this page or worker is cross-origin isolated (COOP/COEP): the condition for SharedArrayBuffer, so for wasm threads. */
export function pageIsIsolated(): boolean {
  return typeof globalThis.crossOriginIsolated === 'boolean' && globalThis.crossOriginIsolated;
}
