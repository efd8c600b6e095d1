/**
 * An empty array that holds objects (strings, Buffers) from the start. V8 makes every `[]` an array of small
 * integers and moves it to one of objects at its first string; code optimized while indexing one segment saw
 * only moved arrays, so each new segment's fresh `[]` fails its map check at the first push and the function
 * around it (indexDecoded, DialogKeys.add...) is deoptimized and compiled again, a segment and a thread.
 * An element kind never goes back, so the array stays one of objects once its element is popped.
 */
export function objectArray<T extends object | string>(): T[] {
  const a: Array<T | string> = [''];
  a.pop();
  return a as T[];
}
