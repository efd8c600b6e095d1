/*
 * The embedded store's view maps, evaluated without a fresh V8 context per
 * document. PouchDB (pouchdb-node's evalFunctionInVm) runs a view's map
 * function on each document by pasting the function and the document's JSON
 * into one script and running it with vm.runInNewContext: a new context and
 * a new script per document and view, about 0.3 ms here unloaded and 1 ms
 * under load. A fleet trace writes 10,000 result documents, and every view
 * maps each of them at its next query: the view query that the trace's
 * merge starts with (results_by_trace) took 10-13 s of the store's CPU
 * after the last host was stored, most of the time from the last
 * packets.pcap to merged.pcap in bench:fanout at 10,000 agents.
 *
 * So, in the store's process only, vm.runInNewContext is wrapped: a script
 * of PouchDB's map shape whose map function is one of `maps` (the design
 * document's, layout.ts) runs as that function compiled once, in one
 * context kept for the process, with the document parsed from its JSON
 * inside that context (as the script's literal was); any other script of
 * that shape (another design document's map, a reduce) runs as it is in
 * that one context; everything else goes to vm.runInNewContext untouched.
 * Still a sandbox (no require, no process), as CouchDB's couchjs is: one
 * context kept across documents, as couchjs keeps one. Only the dispatcher
 * writes design documents here (the store's one user).
 */

import vm from 'node:vm';

/** How PouchDB's map and reduce scripts begin, end, and where the function goes (pouchdb-node 9, evalFunctionInVm). */
const SCRIPT_START = '(function() {"use strict";var createBuiltInError = ';
const RESULT_AT = 'var __result__ = (';
const RETURN = ');return {result: __result__, emitteds: __emitteds__};})()';
/** A map function is called with the document alone: the other two arguments are JSON.stringify(undefined). */
const MAP_ARGS_END = ',undefined,undefined';
/** Compiled functions kept, at most: one per map function and PouchDB version in practice. */
const MAX_COMPILED = 64;

type RunInNewContext = typeof vm.runInNewContext;

export interface ViewContext {
  /** Documents mapped by a function compiled once; scripts run in the kept context; scripts left to vm. */
  readonly counts: { compiled: number; shared: number; passed: number };
  /** Puts vm.runInNewContext back. */
  restore(): void;
}

/** Wraps `target.runInNewContext` (node:vm in the store process) so that PouchDB's map scripts for `maps` cost a call, not a context. */
export function shareViewContext(maps: readonly string[], target: { runInNewContext: RunInNewContext } = vm): ViewContext {
  const own = target.runInNewContext;
  let context: vm.Context | null = null;
  const compiled = new Map<string, (json: string) => unknown>();
  const counts = { compiled: 0, shared: 0, passed: 0 };

  const compile = (script: string, at: number, map: string): ((json: string) => unknown) => {
    // PouchDB's own preamble (its emit, sum, log, isArray, toJSON, createBuiltInError), made a function of the document's JSON.
    const key = script.slice(0, at) + map;
    let fn = compiled.get(key);
    if (!fn) {
      if (compiled.size >= MAX_COMPILED) compiled.clear();
      const preamble = script.slice('(function() {'.length, at);
      const source = `(function(__json__) {${preamble}${RESULT_AT}${map})(JSON.parse(__json__)${RETURN.slice(0, -2)}`;
      fn = vm.runInContext(source, (context ??= vm.createContext({}))) as (json: string) => unknown;
      compiled.set(key, fn);
    }
    return fn;
  };

  const run = function (this: unknown, ...args: Parameters<RunInNewContext>): unknown {
    const script = args[0];
    if (args.length !== 1 || typeof script !== 'string' || !script.startsWith(SCRIPT_START) || !script.endsWith(RETURN)) {
      counts.passed++;
      return own.apply(this, args);
    }
    const at = script.indexOf(RESULT_AT);
    if (at > 0 && script.endsWith(MAP_ARGS_END + RETURN)) {
      const from = at + RESULT_AT.length;
      const end = script.length - MAP_ARGS_END.length - RETURN.length;
      for (const map of maps) {
        if (script.startsWith(map, from) && script.startsWith(')(', from + map.length)) {
          counts.compiled++;
          return compile(script, at, map)(script.slice(from + map.length + 2, end));
        }
      }
    }
    counts.shared++;
    return vm.runInContext(script, (context ??= vm.createContext({})));
  };
  target.runInNewContext = run as RunInNewContext;
  return {
    counts,
    restore: () => {
      if (target.runInNewContext === run) target.runInNewContext = own;
    },
  };
}
