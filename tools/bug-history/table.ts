/**
 * The README's table, made from the catalog (the test checks that README.md
 * holds exactly this text between its table markers):
 *
 *   npx tsx tools/bug-history/table.ts
 */
import { BUG_HISTORY } from './catalog';

const STATUS = { diverges: 'diverges (tested)', planned: 'planned: patch', 'not-expressible': 'not expressible' } as const;
const cell = (s: string) => s.replace(/\|/g, '\\|');

export function bugHistoryTable(): string {
  const count = (st: string) => BUG_HISTORY.filter((b) => b.status === st).length;
  const rows = [
    `${BUG_HISTORY.length} bugs: ${count('diverges')} diverge on their trace (tested), ${count('planned')} planned, ${count('not-expressible')} not expressible in the model.`,
    '',
    '| # | commit | fixed | KVM function | area / operation | plugin | trace | status |',
    '|---|---|---|---|---|---|---|---|',
    ...BUG_HISTORY.map((b, i) =>
      [
        '',
        String(i + 1),
        `\`${b.commit}\`${b.idConfirmed ? '' : ' (id unconfirmed)'}`,
        cell(b.subject),
        `\`${cell(b.kvmFunction)}\``,
        cell(b.where),
        b.plugin ? `[${b.plugin.replace('plugins/', '')}](${b.plugin}) (\`${b.profile}\`)` : '',
        b.trace ? `[${b.trace.replace('traces/', '')}](${b.trace})` : '',
        STATUS[b.status],
        '',
      ].join(' | ').trim(),
    ),
  ];
  return rows.join('\n') + '\n';
}

export function bugHistoryDetails(): string {
  return BUG_HISTORY.map((b, i) => {
    const extra = b.status === 'planned' ? `\n   Plan: ${b.plan}` : b.status === 'not-expressible' ? `\n   Not expressible: ${b.why}` : `\n   Correct profiles the trace runs clean under: ${b.correct!.map((p) => `\`${p}\``).join(', ')}.`;
    return `${i + 1}. \`${b.commit}\` ${b.subject}: ${b.what}${extra}\n`;
  }).join('');
}

if (require.main === module) process.stdout.write(`${bugHistoryTable()}\n${bugHistoryDetails()}`);
