/**
 * The README's table, made from the catalog (the test checks that README.md
 * holds exactly this text between its table markers):
 *
 *   npx tsx tools/bug-history/table.ts           # print the table and the details
 *   npx tsx tools/bug-history/table.ts --write   # put them into README.md
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
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

/** README.md with the text between each pair of markers made anew from the catalog. */
export function writeReadme(readme: string): string {
  const put = (text: string, name: string, body: string) => {
    const a = `<!-- ${name}:start -->`, z = `<!-- ${name}:end -->`;
    const i = text.indexOf(a), j = text.indexOf(z);
    if (i < 0 || j < i) throw new Error(`README.md: markers ${a} ... ${z} missing`);
    return `${text.slice(0, i + a.length)}\n${body.trim()}\n${text.slice(j)}`;
  };
  return put(put(readme, 'table', bugHistoryTable()), 'details', bugHistoryDetails());
}

if (require.main === module) {
  if (process.argv.includes('--write')) {
    const file = path.join(__dirname, 'README.md');
    fs.writeFileSync(file, writeReadme(fs.readFileSync(file, 'utf8')));
  } else process.stdout.write(`${bugHistoryTable()}\n${bugHistoryDetails()}`);
}
