/** Small inline SVG charts for the HTML report: no library, no network. */

export function esc(s: string | number): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** One colour per profile, in order (the base first). */
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#bab0ac'];

export const colorOf = (i: number) => PALETTE[i % PALETTE.length];

function fmt(n: number): string {
  if (Math.abs(n) >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n * 10) / 10);
}

export interface Series {
  name: string;
  values: number[];
  /** a colour of its own (the host's series); else the palette's, by position */
  color?: string;
}

/** Roughly the width of `s` in the charts' 11-12px sans-serif: enough to size label columns so nothing is clipped. */
export const textWidth = (s: string) => Math.ceil(s.length * 6.6) + 4;

/** `s` cut to at most `max` characters, with an ellipsis. */
const cut = (s: string, max: number) => (s.length > max ? s.slice(0, max - 1) + '…' : s);

/**
 * Horizontal grouped bars: one group per category, one bar per series
 * (profile), each labelled with its value.
 */
export function groupedBars(opts: { id?: string; title: string; categories: string[]; series: Series[]; unit?: string }): string {
  const { categories, series } = opts;
  // label column as wide as the longest category (up to 60 characters; longer ones are cut, the whole name in the tooltip)
  const labelW = 12 + Math.max(textWidth('xxxxxxxx'), ...categories.map((c) => textWidth(cut(c, 60))));
  const barH = 14;
  const gap = 10;
  const groupH = series.length * barH + gap;
  const plotW = 460;
  // one legend line per series: profile names are long (area=path,area=path)
  const legendH = 8 + 15 * series.length;
  const h = legendH + 24 + categories.length * groupH;
  const valueW = textWidth('0000.0M');
  const w = Math.max(labelW + plotW + valueW, textWidth(opts.title + (opts.unit ? ` (${opts.unit})` : '')), labelW + 14 + Math.max(0, ...series.map((x) => textWidth(x.name))));
  const colour = (i: number) => series[i].color ?? colorOf(i);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" ${opts.id ? `id="${esc(opts.id)}" ` : ''}role="img" aria-label="${esc(opts.title)}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">`);
  parts.push(`<text x="0" y="14" class="chart-title">${esc(opts.title)}${opts.unit ? ` (${esc(opts.unit)})` : ''}</text>`);
  series.forEach((s, i) => {
    const y = 22 + i * 15;
    parts.push(`<rect x="${labelW}" y="${y - 2}" width="10" height="10" fill="${colour(i)}"/><text x="${labelW + 14}" y="${y + 7}" class="legend">${esc(s.name)}</text>`);
  });
  categories.forEach((c, ci) => {
    const y0 = legendH + 24 + ci * groupH;
    parts.push(`<text x="${labelW - 8}" y="${y0 + (series.length * barH) / 2 + 4}" text-anchor="end" class="axis">${esc(cut(c, 60))}${c.length > 60 ? `<title>${esc(c)}</title>` : ''}</text>`);
    series.forEach((s, si) => {
      const v = s.values[ci] ?? 0;
      const bw = v > 0 ? Math.max(1, (plotW * v) / max) : 0;
      const y = y0 + si * barH;
      parts.push(`<rect x="${labelW}" y="${y}" width="${bw.toFixed(1)}" height="${barH - 3}" fill="${colour(si)}"><title>${esc(`${c} — ${s.name}: ${v}`)}</title></rect>`);
      parts.push(`<text x="${(labelW + bw + 4).toFixed(1)}" y="${y + barH - 5}" class="value">${esc(fmt(v))}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('');
}

export interface Lane {
  name: string;
  /** per bucket: nested exits to L1, exits to L0, events whose outcome differs from the base */
  toL1: number[];
  toL0: number[];
  differs: number[];
  /** first divergence from the base (event index), if any */
  divergence: number | null;
  verdict?: string;
  /** events where L1 broke a contract the optimization relies on (contract monitor), at most a few dozen */
  contractBreaks?: { index: number; contract: string; message: string }[];
}

/**
 * The whole trace as lanes, one per profile: for each bucket of events, bars
 * for exits to L0 and nested exits to L1, red where outcomes differ from the
 * base, and a marker at the first divergence.
 */
export function timeline(opts: { events: number; width: number; lanes: Lane[]; window: [number, number] }): string {
  const { lanes, events } = opts;
  const buckets = Math.max(1, lanes[0]?.toL0.length ?? 1);
  const labelW = 12 + Math.min(textWidth('x'.repeat(80)), Math.max(textWidth('reference'), ...lanes.map((l) => textWidth(l.name))));
  const plotW = 900;
  const laneH = 46;
  const top = 20;
  const w = labelW + plotW + 20;
  const h = top + lanes.length * laneH + 30;
  const bw = plotW / buckets;
  const xOfEvent = (i: number) => labelW + (plotW * i) / Math.max(1, events);
  const max = Math.max(1, ...lanes.flatMap((l) => l.toL0.map((v, i) => Math.max(v, l.toL1[i]))));
  const p: string[] = [];
  p.push(`<svg xmlns="http://www.w3.org/2000/svg" id="timeline-svg" class="chart" role="img" aria-label="timeline of the trace" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">`);
  // the window the event table shows
  const [ws, we] = opts.window;
  p.push(`<rect x="${xOfEvent(ws).toFixed(1)}" y="${top - 6}" width="${Math.max(2, xOfEvent(we) - xOfEvent(ws)).toFixed(1)}" height="${lanes.length * laneH + 6}" class="window"><title>${esc(`events ${ws}..${we - 1} are in the table below`)}</title></rect>`);
  lanes.forEach((l, li) => {
    const y0 = top + li * laneH;
    p.push(`<text x="${labelW - 8}" y="${y0 + laneH / 2}" text-anchor="end" class="axis">${esc(cut(l.name, 80))}${l.name.length > 80 ? `<title>${esc(l.name)}</title>` : ''}</text>`);
    p.push(`<line x1="${labelW}" x2="${labelW + plotW}" y1="${y0 + laneH - 8}" y2="${y0 + laneH - 8}" class="baseline"/>`);
    for (let b = 0; b < buckets; b++) {
      const x = labelW + b * bw;
      const base = y0 + laneH - 8;
      const h0 = ((laneH - 14) * l.toL0[b]) / max;
      const h1 = ((laneH - 14) * l.toL1[b]) / max;
      if (h0 > 0) p.push(`<rect x="${x.toFixed(2)}" y="${(base - h0).toFixed(2)}" width="${Math.max(0.6, bw * 0.9).toFixed(2)}" height="${h0.toFixed(2)}" class="l0"><title>${esc(`bucket ${b}: ${l.toL0[b]} exits to L0, ${l.toL1[b]} to L1`)}</title></rect>`);
      if (h1 > 0) p.push(`<rect x="${x.toFixed(2)}" y="${(base - h1).toFixed(2)}" width="${Math.max(0.6, bw * 0.45).toFixed(2)}" height="${h1.toFixed(2)}" fill="${colorOf(li)}"/>`);
      if (l.differs[b] > 0) p.push(`<rect x="${x.toFixed(2)}" y="${(y0 + 2).toFixed(2)}" width="${Math.max(1.5, bw * 0.9).toFixed(2)}" height="5" class="differs${l.verdict === 'permitted' ? ' permitted' : ''}"><title>${esc(`${l.differs[b]} events differ from the base here`)}</title></rect>`);
    }
    for (const c of l.contractBreaks ?? []) {
      const x = xOfEvent(c.index + 0.5);
      const y = y0 + laneH - 8;
      p.push(`<g class="contract-break" data-index="${c.index}"><path d="M ${x.toFixed(1)} ${y - 6} L ${(x + 5).toFixed(1)} ${y} L ${x.toFixed(1)} ${y + 6} L ${(x - 5).toFixed(1)} ${y} Z"/><title>${esc(`event ${c.index}: L1 broke ${c.contract}: ${c.message}`)}</title></g>`);
    }
    if (l.divergence !== null) {
      const x = xOfEvent(l.divergence + 0.5);
      p.push(`<g class="divergence-marker${l.verdict === 'permitted' ? ' permitted' : ''}" data-index="${l.divergence}"><line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${y0}" y2="${y0 + laneH - 4}"/><path d="M ${(x - 5).toFixed(1)} ${y0} L ${(x + 5).toFixed(1)} ${y0} L ${x.toFixed(1)} ${y0 + 8} Z"/><title>${esc(`first divergence from the base: event ${l.divergence}${l.verdict ? ` (${l.verdict})` : ''}`)}</title></g>`);
    }
  });
  const yAxis = top + lanes.length * laneH + 14;
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const i = Math.round(f * events);
    p.push(`<text x="${xOfEvent(i).toFixed(1)}" y="${yAxis}" text-anchor="middle" class="axis">${esc(fmt(i))}</text>`);
  }
  p.push(`<text x="${labelW + plotW / 2}" y="${yAxis + 14}" text-anchor="middle" class="axis">event index</text>`);
  p.push('</svg>');
  return p.join('');
}
