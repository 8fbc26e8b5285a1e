/**
 * The HTML report: one self-contained file (inline CSS, JS and SVG; a
 * Content-Security-Policy that forbids every network request), readable
 * without JavaScript. The script only adds a jump to the divergence and a
 * filter on the event table.
 */
import { COST_COUNTERS, CostCounter, estimateCycles } from '@nvx/emulator';
import type { DiffResult } from '@nvx/check';
import { TraceHeader, describeOutcome, formatEvent } from '@nvx/trace';
import type { AgreementSummary } from '../importers/agreement';
import type { StatResult } from '../commands/stat';
import { Lane, colorOf, esc, groupedBars, timeline } from './svg';

export interface ReportRow {
  index: number;
  vcpu: number | undefined;
  event: string;
  /** the trace's expect clause, if any */
  expect: string | null;
  /** per profile: the outcome, whether it differs from the base, the exit to L0 it took, estimated cycles */
  cells: { outcome: string; cls: string; differs: boolean; exit: string | null; cycles: number }[];
}

export interface ReportData {
  file: string;
  header: TraceHeader;
  events: number;
  profiles: string[];
  /** one per profile after the first (the base) */
  diffs: DiffResult[];
  stat: StatResult;
  agreement: AgreementSummary[] | null;
  lanes: Lane[];
  bucketWidth: number;
  rows: ReportRow[];
  window: [number, number];
  warnings: string[];
}

/** Which area a cost counter belongs to, for the per-area charts. */
const COUNTER_AREAS: readonly [RegExp, string][] = [
  [/^(l0Exits|nestedExits|nestedEntries)$/, 'nested VMX (every area)'],
  [/^msrBitmap/, 'msr-bitmap'],
  [/^evmcs/, 'evmcs'],
  [/^(shadow|vmread|vmwrite)/, 'shadow-vmcs'],
  [/^(maps|unmaps|memremaps|memunmaps|gpc|kicks|nestedContext|pin|page)/i, 'guest-pages'],
  [/(cpuid|Cpuid|wrmsrs|rdmsrs|gpWithoutExit|msr140|Misc)/, 'cpuid-fault'],
];

export function areaOfCounter(c: string): string {
  for (const [re, a] of COUNTER_AREAS) if (re.test(c)) return a;
  return 'other';
}

const CSS = `
:root{--fg:#1d2330;--muted:#5b6478;--line:#d9dee8;--bg:#fff;--soft:#f5f7fb;--bad:#c0392b;--warn:#b7791f;--ok:#2f855a}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 28px 10px;border-bottom:1px solid var(--line)}h1{margin:0 0 4px;font-size:22px}h2{font-size:17px;margin:26px 0 10px}
.sub{color:var(--muted);margin:0}nav{position:sticky;top:0;background:#fffffff0;border-bottom:1px solid var(--line);padding:6px 28px;z-index:2}
nav a{margin-right:14px;color:#2b5797;text-decoration:none}main{padding:0 28px 40px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:260px;background:var(--soft)}
.card.bug{border-color:var(--bad);background:#fdf0ee}.card.permitted{border-color:var(--warn);background:#fdf8ec}.card.same{border-color:#9ac5a9;background:#f0f8f3}
.card h3{margin:0 0 4px;font-size:14px}.verdict{font-weight:600}.bug .verdict{color:var(--bad)}.permitted .verdict{color:var(--warn)}.same .verdict{color:var(--ok)}
table{border-collapse:collapse;font-size:12.5px}th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);position:sticky;top:33px}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono,td.ev,td.out{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
tr.differs td.out.differs{background:#fde2de}tr.divergent{outline:2px solid var(--bad);outline-offset:-2px}tr.divergent td:first-child::before{content:"\\25C6 ";color:var(--bad)}
td.out.exit{color:#1f5fa8}td.out.ignored{color:var(--warn)}.marker{color:var(--bad);font-weight:700}
.scroll th{top:0}.muted{color:var(--muted)}.controls{margin:8px 0}.controls label{margin-right:16px}.scroll{max-height:620px;overflow:auto;border:1px solid var(--line)}
.chart{display:block;margin:8px 0 18px;max-width:100%;height:auto}.chart-title{font-weight:600;font-size:13px}.axis,.legend,.value{font-size:11px;fill:var(--muted)}.value{fill:var(--fg)}
#timeline-svg .l0{fill:#c9cfdb}#timeline-svg .differs{fill:var(--bad)}#timeline-svg .baseline{stroke:var(--line)}#timeline-svg .window{fill:#fff6d6;stroke:#e8d48a}
.divergence-marker line{stroke:var(--bad);stroke-width:2}.divergence-marker path{fill:var(--bad)}.divergence-marker.permitted line{stroke:var(--warn)}.divergence-marker.permitted path{fill:var(--warn)}
#timeline-svg .differs.permitted{fill:var(--warn)}.contract-break path{fill:#fff;stroke:var(--warn);stroke-width:2}
tr.contract-break td:first-child{box-shadow:inset 4px 0 0 var(--warn)}.break{color:var(--warn);font-weight:700}tr.divergent.permitted{outline-color:var(--warn)}
table.explain td.same{color:var(--muted)}table.explain tr.decides td{background:#fff3c4;font-weight:600}table.explain tr.decides td:first-child::before{content:"\\25B6 ";color:var(--bad)}
.detail{border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:10px 0}.detail.bug{border-color:var(--bad)}.detail.permitted{border-color:var(--warn)}
.contract-status{font-weight:600}.bug .contract-status{color:var(--bad)}.permitted .contract-status{color:var(--warn)}
.charts{display:flex;flex-wrap:wrap;gap:8px 28px}.kv td:first-child{color:var(--muted)}
button{font:inherit;padding:3px 10px;border:1px solid var(--line);border-radius:6px;background:var(--soft);cursor:pointer}
`;

const SCRIPT = `
(function(){
  var jump=document.getElementById('jump');
  if(jump)jump.addEventListener('click',function(){var d=document.getElementById('divergence');if(d){d.scrollIntoView({block:'center'});}});
  var only=document.getElementById('only-interesting');
  if(only)only.addEventListener('change',function(){
    var rows=document.querySelectorAll('#events-table tbody tr');
    for(var i=0;i<rows.length;i++){var r=rows[i];var keep=!only.checked||r.classList.contains('differs')||r.classList.contains('exits')||r.classList.contains('divergent');r.style.display=keep?'':'none';}
  });
  document.documentElement.setAttribute('data-ready','1');
})();
`;

function verdictOf(d: DiffResult): 'same' | 'bug' | 'permitted' {
  if (!d.divergence) return 'same';
  return d.divergence.verdict;
}

function summary(data: ReportData): string {
  const base = data.profiles[0];
  const cards = data.diffs.map((d) => {
    const v = verdictOf(d);
    const dv = d.divergence;
    const body = dv
      ? `<div class="verdict">${v === 'bug' ? 'DIVERGENCE (bug)' : 'DIVERGENCE (permitted)'}</div><div>at <a href="#detail-${esc(d.other)}">event ${dv.index}</a>: <code>${esc(formatEvent({ ...dv.event, expect: undefined }))}</code></div><div class="muted">${dv.kind === 'outcome' ? 'outcomes differ' : 'same outcome, architectural state differs'}${dv.confirmed ? '' : ' (not confirmed by a replay from scratch)'}</div>${dv.firstObservable ? `<div class="muted first-observable">first observable (outcomes differ) at event ${dv.firstObservable.index}</div>` : ''}`
      : `<div class="verdict">same</div><div class="muted">matches ${esc(base)} on all ${d.events} events</div>`;
    return `<div class="card ${v}" data-profile="${esc(d.other)}"><h3>${esc(d.other)} <span class="muted">vs ${esc(base)}</span></h3>${body}</div>`;
  });
  if (!cards.length) cards.push(`<div class="card same"><h3>${esc(base)}</h3><div class="muted">one profile: nothing to compare</div></div>`);
  const first = firstDivergence(data);
  return `<section id="summary"><h2>Summary</h2><div class="cards">${cards.join('')}</div>${first !== null ? `<p><button id="jump" type="button">Jump to the first divergence (event ${first})</button></p>` : ''}</section>`;
}

export function firstDivergence(data: ReportData): number | null {
  const idx = data.diffs.map((d) => d.divergence?.index).filter((x): x is number => x !== undefined);
  return idx.length ? Math.min(...idx) : null;
}

function agreementSection(data: ReportData): string {
  if (!data.agreement) return '';
  const pct = (a: number, t: number) => (t ? `${((100 * a) / t).toFixed(1)}%` : 'n/a');
  const rows = data.agreement.map(
    (s) =>
      `<tr><td>${esc(s.profile)}</td><td class="num">${s.exits.agree} / ${s.exits.total}</td><td class="num">${pct(s.exits.agree, s.exits.total)}</td><td class="num">${s.entries.agree} / ${s.entries.total}</td><td class="num">${s.l1.agree} / ${s.l1.total}</td><td class="num">${s.values.equal} / ${s.values.total}</td><td>${s.first ? `event ${s.first.index}: <code>${esc(s.first.event)}</code> host <code>${esc(s.first.recorded)}</code>, predicted <code>${esc(s.first.predicted)}</code>` : '<span class="muted">none</span>'}</td></tr>`,
  );
  return `<section id="agreement"><h2>Agreement with the host</h2><p class="muted">This trace was imported from <code>${esc(data.header.provenance.source ?? '?')}</code>: each event's expect is what the host recorded. Compared: where control went (exit to L1 with its reason, entry, no exit). Values are the host's and only informative.</p><table><thead><tr><th>profile</th><th class="num">L2 exits</th><th class="num">rate</th><th class="num">entries</th><th class="num">L1 MSR/CPUID</th><th class="num">equal values</th><th>first disagreement</th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`;
}

function timelineSection(data: ReportData): string {
  return `<section id="timeline"><h2>Timeline</h2><p class="muted">${data.events} events in buckets of ${data.bucketWidth}. Grey: exits to L0; coloured: nested VM-exits to L1; red strip: outcomes that differ from ${esc(data.profiles[0])}; marker: first divergence (red: a bug, yellow: permitted by a broken contract); white diamonds: events where L1 broke a contract; yellow band: the events listed below.</p>${timeline({ events: data.events, width: 1000, lanes: data.lanes, window: data.window })}</section>`;
}

/** Events where L1 broke a contract, with the contracts (the monitor follows the base: every diff has the same). */
function contractBreaks(data: ReportData): Map<number, string[]> {
  const m = new Map<number, string[]>();
  for (const d of data.diffs) for (const v of d.violations) if (!(m.get(v.index) ?? []).includes(v.contract)) m.set(v.index, [...(m.get(v.index) ?? []), v.contract]);
  return m;
}

function eventsSection(data: ReportData): string {
  const first = firstDivergence(data);
  const breaks = contractBreaks(data);
  const firstVerdict = data.diffs.find((d) => d.divergence?.index === first)?.divergence?.verdict;
  const head = `<tr><th class="num">#</th><th>vCPU</th><th>event</th><th>expect</th>${data.profiles.map((p, i) => `<th style="border-top:3px solid ${colorOf(i)}">${esc(p)}</th>`).join('')}</tr>`;
  const body = data.rows.map((r) => {
    const differs = r.cells.some((c) => c.differs);
    const exits = r.cells.some((c) => c.cls.startsWith('exit'));
    const divergent = first !== null && r.index === first;
    const broke = breaks.get(r.index);
    const cls = [differs ? 'differs' : '', exits ? 'exits' : '', divergent ? 'divergent' : '', divergent && firstVerdict === 'permitted' ? 'permitted' : '', broke ? 'contract-break' : ''].filter(Boolean).join(' ');
    const cells = r.cells
      .map((c) => `<td class="out ${c.cls.startsWith('exit') ? 'exit' : ''} ${c.cls === 'ignored' ? 'ignored' : ''} ${c.differs ? 'differs' : ''}" title="${esc(`${c.exit ? `exit to L0 (${c.exit})` : 'no exit to L0'}, ~${c.cycles} cycles`)}">${esc(c.outcome)}</td>`)
      .join('');
    return `<tr${divergent ? ' id="divergence"' : ''} data-index="${r.index}"${cls ? ` class="${cls}"` : ''}><td class="num">${divergent ? '<span class="marker" title="first divergence">first divergence</span> ' : ''}${broke ? `<span class="break" title="${esc(`L1 broke ${broke.join(', ')} here`)}">contract broken</span> ` : ''}${r.index}</td><td>${r.vcpu ?? ''}</td><td class="ev">${esc(r.event)}</td><td class="out">${esc(r.expect ?? '')}</td>${cells}</tr>`;
  });
  const [ws, we] = data.window;
  return `<section id="events"><h2>Events ${ws}..${we - 1}</h2><p class="muted">Each profile's outcome; red cells differ from ${esc(data.profiles[0])}; a yellow edge marks an event where L1 broke a contract. Hover a cell for the exit to L0 it took and its estimated cycles.</p><div class="controls"><label><input type="checkbox" id="only-interesting"> only nested exits to L1 and differences</label></div><div class="scroll"><table id="events-table"><thead>${head}</thead><tbody>${body.join('')}</tbody></table></div></section>`;
}

/** When the states parted before the outcomes: the first event whose outcomes differ, after the first state difference. */
function firstObservable(d: DiffResult): string {
  const fo = d.divergence?.firstObservable;
  if (!fo) return '';
  return `<p class="first-observable">The states differ from event ${d.divergence!.index} on; the first outcome that differs (what L1, L2 or the host first sees) is at event ${fo.index}: <code>${esc(formatEvent({ ...fo.event, expect: undefined }))}</code>: ${esc(d.base)} <code>${esc(describeOutcome(fo.base))}</code>, ${esc(d.other)} <code>${esc(describeOutcome(fo.other))}</code>.</p>`;
}

/** `area/path: fact` -> its parts (explainSide's keys). */
function splitFact(k: string): { area: string; path: string; fact: string } {
  const m = /^([^/]+)\/([^:]+): (.*)$/.exec(k);
  return m ? { area: m[1], path: m[2], fact: m[3] } : { area: '', path: '', fact: k };
}

/**
 * Each path's internals at the divergence, the two profiles side by side:
 * one row per area and fact, so what differs lines up. The facts whose
 * values differ (or that only one side has) are what decided the
 * divergence: highlighted and listed first.
 */
export function internalsTable(d: DiffResult): string {
  const dv = d.divergence!;
  const rows = new Map<string, { area: string; fact: string; base?: { path: string; v: string }; other?: { path: string; v: string } }>();
  for (const side of ['base', 'other'] as const) {
    for (const [k, v] of Object.entries(dv.explain[side])) {
      const f = splitFact(k);
      const key = `${f.area}\u0000${f.fact}`;
      const row = rows.get(key) ?? { area: f.area, fact: f.fact };
      row[side] = { path: f.path, v };
      rows.set(key, row);
    }
  }
  if (!rows.size) return '';
  const all = [...rows.values()].map((r) => ({ ...r, decides: r.base?.v !== r.other?.v }));
  all.sort((a, b) => Number(b.decides) - Number(a.decides));
  const cell = (x: { path: string; v: string } | undefined, decides: boolean) => (x ? `<td class="mono${decides ? '' : ' same'}"><span class="muted">${esc(x.path)}:</span> ${esc(x.v)}</td>` : '<td class="muted">—</td>');
  const n = all.filter((r) => r.decides).length;
  return (
    `<h4>Internals side by side</h4><p class="muted">Each path's private state behind the event; ${n ? `the ${n} highlighted fact${n > 1 ? 's' : ''} differ${n > 1 ? '' : 's'} between the profiles` : 'no fact differs'}.</p>` +
    `<table class="kv explain"><thead><tr><th>area</th><th>fact</th><th>${esc(d.base)}</th><th>${esc(d.other)}</th></tr></thead><tbody>` +
    all.map((r) => `<tr${r.decides ? ' class="decides"' : ''}><td>${esc(r.area)}</td><td class="mono">${esc(r.fact)}</td>${cell(r.base, r.decides)}${cell(r.other, r.decides)}</tr>`).join('') +
    '</tbody></table>'
  );
}

function detailSection(data: ReportData): string {
  const parts: string[] = [];
  for (const d of data.diffs) {
    const dv = d.divergence;
    if (!dv) continue;
    const v = dv.verdict;
    const diff = dv.archDiff.length
      ? `<table class="arch-diff"><thead><tr><th>architectural state after the event</th><th>${esc(d.base)}</th><th>${esc(d.other)}</th></tr></thead><tbody>${dv.archDiff.map((x) => `<tr><td class="mono">${esc(x.key)}</td><td class="mono">${esc(x.a ?? '(absent)')}</td><td class="mono">${esc(x.b ?? '(absent)')}</td></tr>`).join('')}</tbody></table>`
      : '<p class="muted">No architectural difference after the event: only the outcomes differ.</p>';
    const explain = internalsTable(d);
    const contract = dv.contract
      ? `<p class="contract-status">Contract: ${dv.contract.party} broke ${esc(dv.contract.contract)} at event ${dv.contract.index}${dv.contract.cause !== undefined ? ` (set up at event ${dv.contract.cause})` : ''}: ${esc(dv.contract.message)}. A divergence after a broken contract is permitted: the optimization may rely on it.</p>`
      : '<p class="contract-status">Contract: none broken before this event, so this is a bug in the optimized path.</p>';
    parts.push(
      `<div class="detail ${v}" id="detail-${esc(d.other)}"><h3>${esc(d.other)} vs ${esc(d.base)}: ${v === 'bug' ? 'DIVERGENCE (bug)' : 'DIVERGENCE (permitted)'} at event ${dv.index}</h3><p><code>${esc(formatEvent({ ...dv.event, expect: undefined }))}</code> — ${dv.kind === 'outcome' ? 'outcomes differ' : 'same outcome, the architectural state differs after the event'}${dv.confirmed ? ', confirmed by a replay from scratch' : ' (not confirmed by a replay from scratch!)'}</p><table class="kv outcomes"><tr><td>${esc(d.base)}</td><td class="mono">${esc(describeOutcome(dv.base))}</td></tr><tr><td>${esc(d.other)}</td><td class="mono">${esc(describeOutcome(dv.other))}</td></tr></table>${firstObservable(d)}${diff}${explain}${contract}${d.violations.length > 1 ? `<p class="muted">${d.violations.length} contract violations in the trace; the first at event ${d.violations[0].index}.</p>` : ''}</div>`,
    );
  }
  if (!parts.length) parts.push(`<p class="muted">Every profile matches ${esc(data.profiles[0])} on every event and at every checkpoint.</p>`);
  return `<section id="divergence-detail"><h2>Divergence</h2>${parts.join('')}</section>`;
}

/** The host's recorded series on an imported trace's charts: grey, apart from the profiles' palette. */
const HOST_COLOR = '#6b7280';

function exitsSection(data: ReportData): string {
  const s = data.stat;
  const reasons: string[] = [];
  for (const p of s.profiles) for (const r of p.rows) if (!reasons.includes(r.reason)) reasons.push(r.reason);
  if (s.host) for (const r of s.host.rows) if (!reasons.includes(r.reason)) reasons.push(r.reason);
  const pct = (a: number, t: number) => (t ? `${((100 * a) / t).toFixed(2)}%` : '');
  const hostBy = new Map((s.host?.rows ?? []).map((r) => [r.reason, r]));
  const head = `<tr><th>VM-EXIT</th>${s.host ? '<th class="num">host samples</th><th class="num">host avg time</th>' : ''}${s.profiles.map((p, i) => `<th class="num" style="border-top:3px solid ${colorOf(i)}">${esc(p.profile)} samples</th><th class="num">Samples%</th><th class="num">Time%</th><th class="num">avg cycles</th>`).join('')}</tr>`;
  const rows = reasons.map((reason) => {
    const h = hostBy.get(reason);
    const hostCells = s.host ? `<td class="num">${h ? h.samples : ''}</td><td class="num">${h && h.samples ? `${(h.ns / h.samples / 1000).toFixed(2)}us` : ''}</td>` : '';
    const cells = s.profiles
      .map((p) => {
        const r = p.rows.find((x) => x.reason === reason);
        return r ? `<td class="num">${r.samples}</td><td class="num">${pct(r.samples, p.samples)}</td><td class="num">${pct(r.cycles, p.cycles)}</td><td class="num">${(r.cycles / r.samples).toFixed(1)}</td>` : '<td></td><td></td><td></td><td></td>';
      })
      .join('');
    return `<tr><td class="mono">${esc(reason)}</td>${hostCells}${cells}</tr>`;
  });
  const chart = groupedBars({
    id: 'exits-chart',
    title: 'Exits to L0 by reason',
    unit: 'samples',
    categories: reasons.slice(0, 16),
    series: [
      ...(s.host ? [{ name: 'host (recorded)', color: HOST_COLOR, values: reasons.slice(0, 16).map((r) => hostBy.get(r)?.samples ?? 0) }] : []),
      ...s.profiles.map((p, i) => ({ name: p.profile, color: colorOf(i), values: reasons.slice(0, 16).map((r) => p.rows.find((x) => x.reason === r)?.samples ?? 0) })),
    ],
  });
  return `<section id="exits"><h2>Exits (perf kvm stat)</h2><table id="exits-table"><thead>${head}</thead><tbody>${rows.join('')}</tbody></table>${reasons.length ? chart : ''}</section>`;
}

function costsSection(data: ReportData): string {
  const profiles = data.stat.profiles;
  const byArea = new Map<string, CostCounter[]>();
  for (const c of COST_COUNTERS) {
    if (!profiles.some((p) => p.costs[c])) continue;
    const a = areaOfCounter(c);
    if (!byArea.has(a)) byArea.set(a, []);
    byArea.get(a)!.push(c);
  }
  const charts: string[] = [];
  // estimated cycles by area
  const areas = [...byArea.keys()];
  const cycles = profiles.map((p) => {
    const by = estimateCycles(p.costs).by;
    const m = new Map<string, number>();
    for (const [c, v] of Object.entries(by)) m.set(areaOfCounter(c), (m.get(areaOfCounter(c)) ?? 0) + (v ?? 0));
    return m;
  });
  const pricedAreas = areas.filter((a) => cycles.some((m) => m.get(a)));
  if (pricedAreas.length) {
    charts.push(groupedBars({ id: 'cycles-by-area', title: 'Estimated cycles by area', unit: 'cycles, cost table', categories: pricedAreas, series: profiles.map((p, i) => ({ name: p.profile, values: pricedAreas.map((a) => cycles[i].get(a) ?? 0) })) }));
  }
  for (const [a, counters] of byArea) {
    charts.push(`<div class="area-chart" data-area="${esc(a)}">${groupedBars({ title: a, unit: 'counts', categories: counters, series: profiles.map((p) => ({ name: p.profile, values: counters.map((c) => p.costs[c]) })) })}</div>`);
  }
  if (!charts.length) charts.push('<p class="muted">No counter moved.</p>');
  const total = `<p>Estimated cycles of the whole trace: ${profiles.map((p, i) => `<span style="color:${colorOf(i)}">■</span> ${esc(p.profile)} ${p.estimatedCycles}`).join(' · ')}</p>`;
  return `<section id="costs"><h2>Costs by area</h2>${total}<div class="charts">${charts.join('')}</div></section>`;
}

function traceSection(data: ReportData): string {
  const h = data.header;
  const cfg = Object.entries(h.config)
    .filter(([k]) => k !== 'memslots')
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td class="mono">${esc(String(v))}</td></tr>`)
    .join('');
  const slots = h.config.memslots.map((m) => `<tr><td>memslot ${m.slot}</td><td class="mono">gfn 0x${m.gfn.toString(16)} npages 0x${m.npages.toString(16)} flags ${m.flags}</td></tr>`).join('');
  const prov = Object.entries(h.provenance)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td class="mono">${esc(v.length > 600 ? v.slice(0, 600) + '…' : v)}</td></tr>`)
    .join('');
  const warn = data.warnings.length ? `<p class="muted">Warnings: ${data.warnings.map(esc).join('; ')}</p>` : '';
  return `<section id="trace"><h2>Trace</h2>${warn}<table class="kv">${cfg}${slots}${prov}</table></section>`;
}

export function renderReport(data: ReportData): string {
  const title = `nvx report: ${data.file}`;
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title><style>${CSS}</style></head><body>`,
    `<header><h1>nvx report</h1><p class="sub"><code>${esc(data.file)}</code> · ${data.events} events · ${data.header.config.vcpus} vCPU${data.header.config.vcpus === 1 ? '' : 's'} · profiles ${data.profiles.map((p, i) => `<span style="color:${colorOf(i)}">■</span> ${esc(p)}`).join(', ')} (the first is the base)</p></header>`,
    '<nav><a href="#summary">Summary</a>' + (data.agreement ? '<a href="#agreement">Agreement</a>' : '') + '<a href="#timeline">Timeline</a><a href="#events">Events</a><a href="#divergence-detail">Divergence</a><a href="#exits">Exits</a><a href="#costs">Costs</a><a href="#trace">Trace</a></nav>',
    '<main>',
    summary(data),
    agreementSection(data),
    timelineSection(data),
    eventsSection(data),
    detailSection(data),
    exitsSection(data),
    costsSection(data),
    traceSection(data),
    '</main>',
    `<script>${SCRIPT}</script>`,
    '</body></html>',
    '',
  ].join('\n');
}
