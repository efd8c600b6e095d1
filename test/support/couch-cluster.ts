/*
 * A three-node Apache CouchDB cluster started by ../shared/couchdb/up.sh,
 * for the tests that kill one of its nodes: where each node listens, how to
 * SIGKILL one (its pid file) and how to start it again (up.sh itself, which
 * restarts only the nodes that are not running).
 *
 * up.sh lays a cluster out as: node i on 127.0.0.1:PORT + (i-1)*10000, its
 * files under DIR/node<i>, its Erlang VM's pid in DIR/node<i>/couchdb.pid.
 */

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Nodes up.sh starts for a cluster, and the port step between them. */
const NODES = 3;
const PORT_STEP = 10_000;

export interface ClusterNode {
  /** 1-based, as up.sh numbers them. */
  index: number;
  /** With the admin credentials. */
  url: string;
  pidFile: string;
}

export interface CouchCluster {
  /** Node 1's URL: the one the dispatcher is given. */
  url: string;
  nodes: ClusterNode[];
  /** SIGKILLs node `index` and waits until its port refuses; returns the pid killed. */
  kill(index: number): Promise<number>;
  /** Runs up.sh again, which starts the nodes that are down and waits until every node answers; returns its ms. */
  restart(): Promise<number>;
}

/**
 * The cluster named by COUCHDB_CLUSTER_URL (node 1's URL, as up.sh printed
 * it) and COUCHDB_CLUSTER_DIR (up.sh's --dir), restarted with COUCHDB_UP
 * (default ../shared/couchdb/up.sh beside the checkout); or why a test on it
 * cannot run here.
 */
export function clusterFromEnv(): CouchCluster | string {
  const url = process.env.COUCHDB_CLUSTER_URL;
  const dir = process.env.COUCHDB_CLUSTER_DIR;
  if (!url || !dir) {
    return 'needs a three-node Apache CouchDB: COUCHDB_CLUSTER_URL and COUCHDB_CLUSTER_DIR from `../shared/couchdb/up.sh --nodes 3 --port P --dir DIR` (.ci/run starts one when ../shared/couchdb is there)';
  }
  const upSh = process.env.COUCHDB_UP ?? resolve(__dirname, '..', '..', '..', '..', 'shared', 'couchdb', 'up.sh');
  if (!existsSync(upSh)) return `needs up.sh to restart a killed node: ${upSh} is not there (set COUCHDB_UP)`;
  const base = new URL(url);
  const port = Number(base.port);
  if (!Number.isInteger(port) || port + (NODES - 1) * PORT_STEP > 65_535) return `COUCHDB_CLUSTER_URL ${base.host}: up.sh's node ${NODES} would listen on ${port + (NODES - 1) * PORT_STEP}, not a port`;
  const nodes = Array.from({ length: NODES }, (_, i) => {
    const u = new URL(url);
    u.port = String(port + i * PORT_STEP);
    return { index: i + 1, url: u.toString().replace(/\/$/, ''), pidFile: `${dir}/node${i + 1}/couchdb.pid` };
  });
  for (const n of nodes) if (!existsSync(n.pidFile)) return `COUCHDB_CLUSTER_DIR ${dir} holds no ${n.pidFile}: not a --nodes ${NODES} up.sh directory`;

  const refuses = async (nodeUrl: string): Promise<boolean> => {
    try {
      await fetch(new URL('/_up', nodeUrl.replace(/\/\/[^@/]*@/, '//')), { signal: AbortSignal.timeout(1000) });
      return false;
    } catch {
      return true;
    }
  };

  return {
    url: nodes[0].url,
    nodes,
    async kill(index) {
      const node = nodes[index - 1];
      const pid = Number(readFileSync(node.pidFile, 'utf8').trim());
      // A pid file outlives its process: only a CouchDB VM running from this node's directory is killed.
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.includes('beam') || !cmdline.includes(`${dir}/node${index}/`)) throw new Error(`pid ${pid} in ${node.pidFile} is not node ${index}'s CouchDB: ${cmdline.replace(/\0/g, ' ').slice(0, 200)}`);
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 100 && !(await refuses(node.url)); i++) await sleep(50);
      if (!(await refuses(node.url))) throw new Error(`node ${index} still answers 5 s after SIGKILL of pid ${pid}`);
      return pid;
    },
    async restart() {
      const started = Date.now();
      const args = [upSh, '--port', String(port), '--nodes', String(NODES), '--dir', dir, '--user', decodeURIComponent(base.username), '--password', decodeURIComponent(base.password)];
      // Not spawnSync: the dispatcher under test runs in this process and must go on meanwhile.
      const child = spawn('bash', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      if (code !== 0) throw new Error(`up.sh exited with ${code} restarting the cluster: ${stderr.trim()}`);
      return Date.now() - started;
    },
  };
}
