export { startEmbeddedCouch } from './embedded';
export type { EmbeddedCouch, EmbeddedCouchOptions } from './embedded';
export * from './layout';
export * from './store';
