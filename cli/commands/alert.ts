import type { Argv, CommandModule } from 'yargs';

/*
 * `tracefleet alert add|list|rm`: the dispatcher's alert rules
 * (shared/alerts/rule.ts). Reading needs any role, writing the admin role;
 * the dispatcher checks a rule and names the field it refuses.
 */

type Args = Record<string, unknown>;
const remote = () => require('./remote') as typeof import('./remote');

async function client(a: Args) {
  const { DispatcherClient } = await import('../api-client');
  return new DispatcherClient(await remote().connect(a));
}

async function addCmd(a: Args) {
  const { EXIT } = await import('../../shared/errors/catalogue');
  const c = await client(a);
  try {
    const rule = await c.putAlertRule({
      name: a.name as string,
      figure: a.figure as 'ser',
      op: a.op as 'below',
      threshold: a.threshold as number,
      minInvites: a.minInvites as number,
      windows: a.windows as number,
      scope: a.scope as 'fleet',
      ...(a.match !== undefined ? { match: a.match as string } : {}),
      severity: a.severity as 'warning',
      ...(a.description !== undefined ? { description: a.description as string } : {}),
    });
    const { describeRule } = await import('../../shared/alerts/rule');
    process.stderr.write(`tracefleet: alert rule ${rule.name} saved: ${describeRule(rule)}\n`);
    if (a.json) process.stdout.write(`${JSON.stringify({ rule })}\n`);
    return EXIT.OK;
  } finally {
    c.close();
  }
}

async function listCmd(a: Args) {
  const { EXIT } = await import('../../shared/errors/catalogue');
  const { describeRule } = await import('../../shared/alerts/rule');
  const { safeText } = await import('../format');
  const c = await client(a);
  try {
    const rules = await c.alertRules();
    if (a.json) process.stdout.write(`${JSON.stringify({ rules })}\n`);
    else if (rules.length === 0) process.stderr.write('tracefleet: no alert rule: add one with tracefleet alert add\n');
    else for (const r of rules) process.stdout.write(safeText(`${r.name}  ${r.severity}  ${describeRule(r)}${r.description ? `  (${r.description})` : ''}`) + '\n');
    return EXIT.OK;
  } finally {
    c.close();
  }
}

async function rmCmd(a: Args) {
  const { EXIT } = await import('../../shared/errors/catalogue');
  const c = await client(a);
  try {
    await c.deleteAlertRule(a.name as string);
    process.stderr.write(`tracefleet: alert rule ${String(a.name)} removed\n`);
    return EXIT.OK;
  } finally {
    c.close();
  }
}

const withConnection = (y: Argv<Args>) => remote().connectionOptions(y.option('json', { type: 'boolean', default: false })) as unknown as Argv<Args>;

export const alertCommand: CommandModule<object, Args> = {
  command: 'alert <action>',
  describe: "the dispatcher's alert rules on the fleet's SIP statistics: add (or replace), list, rm",
  builder: (y) =>
    (y as unknown as Argv<Args>)
      .command({
        command: 'add <name>',
        describe: 'add or replace a rule, e.g. alert add carrier-ser --figure ser --op below --threshold 80 --min-invites 50 --scope peer',
        builder: (yy) =>
          withConnection(
            yy
              .positional('name', { type: 'string', describe: 'rule name: 1-64 letters, digits, _ . -' })
              .option('figure', { type: 'string', demandOption: true, describe: 'ser, seer, isa, answerRatio, errorRatio (percent), srd, meanDuration (seconds), invites, messages' })
              .option('op', { type: 'string', default: 'above', describe: 'below or above: which side of the threshold fires' })
              .option('threshold', { type: 'number', demandOption: true })
              .option('min-invites', { type: 'number', default: 0, describe: 'INVITE dialogs the figure must stand on, at least' })
              .option('windows', { type: 'number', default: 1, describe: 'how many of the latest statistics windows are summed' })
              .option('scope', { type: 'string', default: 'peer', describe: 'fleet, host (each host) or peer (each peer)' })
              .option('match', { type: 'string', describe: 'with --scope host or peer: only this host or peer' })
              .option('severity', { type: 'string', default: 'warning', describe: 'warning or critical (a label at the webhook)' })
              .option('description', { type: 'string' }) as unknown as Argv<Args>,
          ),
        handler: (x) => remote().run(addCmd)(x),
      })
      .command({ command: 'list', describe: 'the rules', builder: withConnection, handler: (x) => remote().run(listCmd)(x) })
      .command({ command: 'rm <name>', describe: 'remove a rule (its alerts clear)', builder: (yy) => withConnection(yy.positional('name', { type: 'string' }) as unknown as Argv<Args>), handler: (x) => remote().run(rmCmd)(x) })
      .demandCommand(1, 'give add, list or rm') as unknown as Argv<Args>,
  handler: () => {},
};
