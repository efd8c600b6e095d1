import { type QueryResult, closeResult, resultRefs } from '../../agent/query/engine';
import type { PacketRefs } from '../../agent/query/result';

/** A result with its packets listed whole (a test's results are small), its index files released. */
export function closedWithRefs(r: QueryResult): QueryResult & { refs: PacketRefs } {
  try {
    return { ...r, refs: resultRefs(r) };
  } finally {
    closeResult(r);
  }
}
