// The simulator's reports, made from a RunResult after the run: a terminal summary and one
// self-contained HTML page. The page has no script, no font, no stylesheet and no image
// from anywhere else (charts are inline SVG drawn here), so it opens offline from a
// file:// URL and can be mailed or attached to a ticket as it is. Pure functions: no
// files, no clocks; the CLI decides where the text goes.

import type { NodeLimitCounts, Percentiles, RunResult, Sample } from './types.js';

/**
 * Most points one chart series draws. A run of hours has thousands of one-second samples;
 * past this many, consecutive seconds are merged into buckets so the page stays small and
 * the browser stays fast.
 */
export const chartPointsMax = 1000;

/** Examples per verdict kind printed in the terminal (the HTML page shows all of them). */
const terminalExamplesMax = 5;

// ---------------------------------------------------------------------------------------
// Numbers and figures shared by both reports

function formatInt(n: number): string {
  if (!Number.isFinite(n)) return '-';
  const digits = Math.round(Math.abs(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return n < 0 ? `-${digits}` : digits;
}

/** Milliseconds with the precision that matters at their size. */
function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  const size = Math.abs(ms);
  if (size >= 100) return formatInt(ms);
  if (size >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

function formatRate(perSecond: number): string {
  return Math.abs(perSecond) >= 100 ? formatInt(perSecond) : perSecond.toFixed(1);
}

/** `1 worker`, `2 workers`, `10,000 devices`. */
function count(n: number, noun: string): string {
  return `${formatInt(n)} ${noun}${n === 1 ? '' : 's'}`;
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-';
  const text = `${seconds.toFixed(1)} s`;
  if (seconds < 60) return text;
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  const clock = h > 0 ? `${h}h${String(m).padStart(2, '0')}m${String(s).padStart(2, '0')}s` : `${m}m${String(s).padStart(2, '0')}s`;
  return `${text} (${clock})`;
}

interface RateFigures {
  name: string;
  total: number;
  avgPerSecond: number;
  peakPerSecond: number;
}

/** Totals with their average rate over the run and their busiest second. */
function rateFigures(result: RunResult): RateFigures[] {
  // The average is over the run's duration, not over the samples: a second with no sample
  // (the sampler stalled) still counts as time the run took.
  const seconds = result.durationSeconds > 0 ? result.durationSeconds : result.samples.length;
  const figures = (name: string, total: number, pick: (s: Sample) => number): RateFigures => ({
    name,
    total,
    avgPerSecond: seconds > 0 ? total / seconds : 0,
    peakPerSecond: result.samples.reduce((peak, s) => Math.max(peak, pick(s)), 0),
  });
  const t = result.totals;
  return [
    figures('sent', t.sent, (s) => s.sent),
    figures('acked', t.acked, (s) => s.acked),
    figures('failed', t.failed, (s) => s.failed),
    figures('read', t.read, (s) => s.read),
  ];
}

interface NodeFigures {
  peak: number;
  avg: number;
}

/** Peak and average of a node figure over the samples that have it; null when none does. */
function nodeFigures(samples: Sample[], pick: (s: Sample) => number | null): NodeFigures | null {
  let peak = -Infinity;
  let sum = 0;
  let count = 0;
  for (const sample of samples) {
    const value = pick(sample);
    if (value === null || !Number.isFinite(value)) continue;
    peak = Math.max(peak, value);
    sum += value;
    count++;
  }
  return count === 0 ? null : { peak, avg: sum / count };
}

function errorsByCount(errors: Record<string, number>): [string, number][] {
  return Object.entries(errors).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

const latencyKinds: { name: string; pick: (r: RunResult) => Percentiles }[] = [
  { name: 'send-to-ack', pick: (r) => r.totals.ackLatency },
  { name: 'produce-to-consume', pick: (r) => r.totals.latency },
];

/** The totals table, for both reports: header row first. */
function rateRows(result: RunResult): string[][] {
  const rows = rateFigures(result).map((f) => [f.name, formatInt(f.total), formatRate(f.avgPerSecond), formatInt(f.peakPerSecond)]);
  return [['', 'total', 'avg/s', 'peak/s'], ...rows];
}

/**
 * The latency table, for both reports: header row first. Below the whole run's rows, the
 * same latencies while every device was connected under load, when they were.
 */
function latencyRows(result: RunResult): string[][] {
  const rows = [['', 'count', 'p50', 'p90', 'p99', 'p99.9', 'max'], ...latencyKinds.map((k) => [k.name, ...percentileCells(k.pick(result))])];
  const all = result.totals.allConnected;
  if (all) {
    const span = `${all.fromSeconds.toFixed(1)}-${all.toSeconds.toFixed(1)} s`;
    rows.push([`send-to-ack, all connected (${span})`, ...percentileCells(all.ackLatency)]);
    rows.push([`produce-to-consume, all connected`, ...percentileCells(all.latency)]);
  }
  return rows;
}

function percentileCells(p: Percentiles): string[] {
  // Percentiles of no events are not zero: they do not exist.
  if (p.count === 0) return [formatInt(0), '-', '-', '-', '-', '-'];
  return [formatInt(p.count), formatMs(p.p50), formatMs(p.p90), formatMs(p.p99), formatMs(p.p999), formatMs(p.max)];
}

/**
 * The node's own counts of its connection limits, for both reports: what, total, and the
 * total by reason or limit. A fleet that connects and reconnects within the defaults shows
 * zeros here.
 */
function nodeLimitRows(limits: NodeLimitCounts): string[][] {
  const total = (counts: Record<string, number>) => Object.values(counts).reduce((sum, n) => sum + n, 0);
  const byLabel = (counts: Record<string, number>) =>
    errorsByCount(counts)
      .filter(([, n]) => n > 0)
      .map(([label, n]) => `${label} ${formatInt(n)}`)
      .join(', ');
  return [
    ['connections refused', formatInt(total(limits.refused)), byLabel(limits.refused)],
    ['evicted before admission', formatInt(limits.evicted), limits.evicted > 0 ? 'handshakesMax' : ''],
    ['limits reached', formatInt(total(limits.limitsReached)), byLabel(limits.limitsReached)],
  ];
}

const nodeLimitsTitle = 'Node limits (its /metrics, since its last start)';
const nodeLimitsUnknown = 'not known: read only from a node the simulator started';

const verdictKinds: { name: string; count: (r: RunResult) => number; examples: (r: RunResult) => string[] }[] = [
  { name: 'lost', count: (r) => r.verdict.lost, examples: (r) => r.verdict.examples.lost },
  { name: 'duplicated', count: (r) => r.verdict.duplicated, examples: (r) => r.verdict.examples.duplicated },
  { name: 'out of order', count: (r) => r.verdict.outOfOrder, examples: (r) => r.verdict.examples.outOfOrder },
  { name: 'unacked seen', count: (r) => r.verdict.unackedSeen, examples: () => [] },
];

// ---------------------------------------------------------------------------------------
// Terminal summary

interface Paint {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
}

function painter(color: boolean): Paint {
  const wrap = (code: string) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { bold: wrap('1'), dim: wrap('2'), red: wrap('1;31'), green: wrap('1;32'), yellow: wrap('33') };
}

/**
 * Names from the scenario file and from errors go to a terminal: a control character in
 * them could move the cursor or recolor the screen, so each is shown as '?'.
 */
function plain(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

/**
 * Aligned columns: the first left-aligned, the rest right-aligned. Cells are padded
 * before they are painted, so escape codes never upset the widths.
 */
function columns(rows: string[][], paintCell?: (row: number, col: number, padded: string) => string): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row, r) => {
    const cells = row.map((cell, c) => {
      const padded = c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]);
      return paintCell ? paintCell(r, c, padded) : padded;
    });
    return `  ${cells.join('  ')}`.trimEnd();
  });
}

export function terminalSummary(result: RunResult, options?: { color?: boolean }): string {
  const paint = painter(options?.color === true);
  const lines: string[] = [];
  const heading = (title: string) => lines.push('', paint.bold(title));
  const header = (r: number, _c: number, padded: string) => (r === 0 ? paint.dim(padded) : padded);

  lines.push(paint.bold(`Tributary simulator: ${plain(result.scenario)}`));
  lines.push(
    `  ${count(result.devices, 'device')}, ${count(result.workers, 'worker')}, ` +
      `${formatSeconds(result.durationSeconds)}, node ${plain(result.nodeUrl)}`,
  );
  lines.push(paint.dim(`  started ${plain(result.startedAt)}`));

  heading('Events');
  const failedTotal = (r: number, c: number) => r === 3 && c === 1 && result.totals.failed > 0;
  lines.push(...columns(rateRows(result), (r, c, padded) => (r === 0 ? paint.dim(padded) : failedTotal(r, c) ? paint.yellow(padded) : padded)));
  const connect = result.totals.connectSeconds;
  const fleet = result.devices === 1 ? { all: 'the device', notAll: 'the device never' } : { all: `all ${count(result.devices, 'device')}`, notAll: `not every one of the ${count(result.devices, 'device')}` };
  lines.push(connect === null ? paint.yellow(`  connect: ${fleet.notAll} connected`) : `  connect: ${fleet.all} in ${formatSeconds(connect)}`);

  heading('Latency (ms)');
  lines.push(...columns(latencyRows(result), header));

  const errors = errorsByCount(result.totals.errors);
  heading('Errors');
  if (errors.length === 0) lines.push('  none');
  else {
    const rows = errors.map(([name, count]) => [plain(name), formatInt(count)]);
    lines.push(...columns(rows, (_r, c, padded) => (c === 1 ? paint.yellow(padded) : padded)));
  }

  if (result.actions.length > 0) {
    heading('Actions');
    // The action's description is text, not a figure: left-aligned.
    const rows = result.actions.map((a) => [`t=${a.at.toFixed(1)} s`, plain(a.what)]);
    lines.push(...columns(rows, (_r, c, padded) => (c === 1 ? padded.trimStart() : padded)));
  }

  const rss = nodeFigures(result.samples, (s) => s.nodeRssMiB);
  const cpu = nodeFigures(result.samples, (s) => s.nodeCpuPercent);
  if (rss || cpu) {
    heading('Node');
    const row = (name: string, f: NodeFigures | null) => [name, f ? f.peak.toFixed(1) : '-', f ? f.avg.toFixed(1) : '-'];
    lines.push(...columns([['', 'peak', 'avg'], row('RSS MiB', rss), row('CPU %', cpu)], header));
  }

  heading(nodeLimitsTitle);
  if (result.nodeLimits === null) lines.push(`  ${nodeLimitsUnknown}`);
  else {
    const rows = nodeLimitRows(result.nodeLimits).map((row) => row.map(plain));
    // The counts right-aligned, painted when not zero; the breakdown is text, left-aligned.
    lines.push(...columns(rows, (_r, c, padded) => (c === 2 ? padded.trimStart() : c === 1 && padded.trim() !== '0' ? paint.yellow(padded) : padded)));
  }

  heading('Verdict');
  lines.push(...verdictLines(result, paint));
  return `${lines.join('\n')}\n`;
}

function verdictLines(result: RunResult, paint: Paint): string[] {
  const v = result.verdict;
  const lines = columns(
    [...verdictKinds.map((k) => [k.name, formatInt(k.count(result))]), ['acked', formatInt(v.acked)], ['read', formatInt(v.read)]],
    (r, c, padded) => (c === 1 && r < 3 && verdictKinds[r].count(result) > 0 ? paint.red(padded) : padded),
  );
  for (const kind of verdictKinds) {
    const examples = kind.examples(result);
    if (examples.length === 0) continue;
    const shown = examples.slice(0, terminalExamplesMax).map(plain).join(', ');
    const more = examples.length > terminalExamplesMax ? `, ... (${examples.length - terminalExamplesMax} more examples)` : '';
    lines.push(`  ${kind.name} e.g. (device seq): ${shown}${more}`);
  }
  lines.push('', v.ok ? paint.green('VERDICT OK') : paint.red('VERDICT FAILED'));
  return lines;
}

// ---------------------------------------------------------------------------------------
// Charts: inline SVG

/** Text for HTML element content and attribute values (quoted with either quote). */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] ?? ch);
}

/**
 * Consecutive runs of at most ceil(n / maxBuckets) items, so there are at most maxBuckets
 * of them; each bucket becomes one point of a chart.
 */
export function buckets<T>(items: readonly T[], maxBuckets: number): T[][] {
  const size = Math.max(1, Math.ceil(items.length / Math.max(1, maxBuckets)));
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

type Point = [x: number, y: number | null];

interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Point[];
}

/**
 * One point per bucket: at the bucket's mean time, the mean (rates, gauges) or the max
 * (latencies: a merged bucket must not hide its worst second) of the seconds that have a
 * value. A bucket with no value is a gap in the line, not a zero.
 */
function seriesOf(
  groups: Sample[][],
  name: string,
  color: string,
  pick: (s: Sample) => number | null,
  merge: 'mean' | 'max',
  dashed = false,
): Series {
  const points = groups.map((group): Point => {
    let sum = 0;
    let max = -Infinity;
    let count = 0;
    for (const sample of group) {
      const value = pick(sample);
      if (value === null || !Number.isFinite(value)) continue;
      sum += value;
      max = Math.max(max, value);
      count++;
    }
    const at = group.reduce((total, s) => total + s.at, 0) / group.length;
    return [at, count === 0 ? null : merge === 'max' ? max : sum / count];
  });
  return { name, color, dashed, points };
}

interface Chart {
  id: string;
  title: string;
  yLabel: string;
  series: Series[];
  xMax: number;
  markers: { at: number; what: string }[];
  /** Log scale when the values span this many times or more (latency: 1 ms and 2 s in one chart). */
  logAtRatio?: number;
  note?: string;
}

const width = 900;
const height = 300;
const plotLeft = 70;
const plotRight = width - 20;
const plotTop = 46;
const plotBottom = height - 46;

/** A round step (1, 2 or 5 times a power of ten) giving about `count` intervals over `range`. */
function niceStep(range: number, count: number): number {
  const raw = range / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function formatTick(value: number): string {
  if (value === 0) return '0';
  const size = Math.abs(value);
  if (size >= 1000) return formatInt(value);
  if (size >= 1) return String(Number(value.toFixed(2)));
  return String(Number(value.toPrecision(2)));
}

interface YScale {
  toY(value: number): number;
  ticks: number[];
  log: boolean;
}

function yScale(values: number[], logAtRatio: number | undefined): YScale {
  const max = values.reduce((m, v) => Math.max(m, v), 0);
  const minPositive = values.reduce((m, v) => (v > 0 ? Math.min(m, v) : m), Infinity);
  const span = plotBottom - plotTop;
  if (logAtRatio !== undefined && max > 0 && max / minPositive >= logAtRatio) {
    const low = Math.floor(Math.log10(minPositive));
    const high = Math.max(low + 1, Math.ceil(Math.log10(max)));
    const ticks: number[] = [];
    const steps = high - low <= 3 ? [1, 2, 5] : [1];
    for (let e = low; e <= high; e++) for (const m of steps) if (e < high || m === 1) ticks.push(m * 10 ** e);
    // Zero has no place on a log axis: it sits on the bottom line.
    const toY = (v: number) => plotBottom - ((Math.log10(Math.max(v, 10 ** low)) - low) / (high - low)) * span;
    return { toY, ticks, log: true };
  }
  const step = niceStep(max > 0 ? max : 1, 5);
  const top = Math.max(step, Math.ceil((max > 0 ? max : 1) / step) * step);
  const ticks: number[] = [];
  for (let i = 0; i * step <= top + step / 1e6; i++) ticks.push(i * step);
  return { toY: (v: number) => plotBottom - (v / top) * span, ticks, log: false };
}

/** Characters of an action's label drawn on a chart. */
const markerLabelMax = 32;

const coordinate = (n: number) => (Math.round(n * 10) / 10).toString();

function svgChart(chart: Chart): string {
  const values = chart.series.flatMap((s) => s.points.flatMap(([, y]) => (y === null ? [] : [y])));
  const xMax = chart.xMax > 0 ? chart.xMax : 1;
  const toX = (at: number) => plotLeft + (Math.min(Math.max(at, 0), xMax) / xMax) * (plotRight - plotLeft);
  const y = yScale(values, chart.logAtRatio);
  const parts: string[] = [];
  parts.push(
    `<svg id="${chart.id}" class="chart" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" ` +
      `role="img" aria-label="${escapeHtml(chart.title)}">`,
    `<rect class="plot" x="${plotLeft}" y="${plotTop}" width="${plotRight - plotLeft}" height="${plotBottom - plotTop}"/>`,
  );
  for (const tick of y.ticks) {
    const ty = coordinate(y.toY(tick));
    parts.push(
      `<line class="grid" x1="${plotLeft}" x2="${plotRight}" y1="${ty}" y2="${ty}"/>`,
      `<text class="tick" x="${plotLeft - 6}" y="${ty}" text-anchor="end" dy="0.32em">${formatTick(tick)}</text>`,
    );
  }
  const xStep = niceStep(xMax, 8);
  for (let t = 0; t <= xMax + xStep / 1e6; t += xStep) {
    const tx = coordinate(toX(t));
    parts.push(
      `<line class="grid" x1="${tx}" x2="${tx}" y1="${plotTop}" y2="${plotBottom}"/>`,
      `<text class="tick" x="${tx}" y="${plotBottom + 16}" text-anchor="middle">${formatTick(t)}</text>`,
    );
  }
  parts.push(
    `<text class="axis" x="${(plotLeft + plotRight) / 2}" y="${height - 8}" text-anchor="middle">seconds since the load started</text>`,
    `<text class="axis" transform="translate(16 ${(plotTop + plotBottom) / 2}) rotate(-90)" text-anchor="middle">` +
      `${escapeHtml(chart.yLabel)}${y.log ? ' (log scale)' : ''}</text>`,
  );
  if (values.length === 0) {
    const [cx, cy] = [(plotLeft + plotRight) / 2, (plotTop + plotBottom) / 2];
    parts.push(`<text class="empty" x="${cx}" y="${cy}" text-anchor="middle">no samples</text>`);
  }
  for (const series of chart.series) parts.push(seriesSvg(series, toX, y));
  chart.markers.forEach((marker, i) => parts.push(markerSvg(marker, i, toX)));
  parts.push(legendSvg(chart.series), '</svg>');
  return parts.join('\n');
}

/** A series as polylines, broken where it has no value; a lone point is drawn as a dot. */
function seriesSvg(series: Series, toX: (at: number) => number, y: YScale): string {
  const runs: string[][] = [];
  let run: string[] = [];
  for (const [at, value] of series.points) {
    if (value === null) {
      if (run.length > 0) runs.push(run);
      run = [];
      continue;
    }
    run.push(`${coordinate(toX(at))},${coordinate(y.toY(value))}`);
  }
  if (run.length > 0) runs.push(run);
  const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
  const name = escapeHtml(series.name);
  const shapes = runs.map((points) => {
    const line = `<polyline data-series="${name}" points="${points.join(' ')}" stroke="${series.color}"${dash}/>`;
    if (points.length > 1) return line;
    const [cx, cy] = points[0].split(',');
    return `${line}<circle cx="${cx}" cy="${cy}" r="2.5" fill="${series.color}"/>`;
  });
  return `<g class="series"><title>${name}</title>${shapes.join('')}</g>`;
}

function markerSvg(marker: { at: number; what: string }, index: number, toX: (at: number) => number): string {
  const x = toX(marker.at);
  // Labels of actions close in time are staggered so they do not print over each other.
  const labelY = plotTop + 12 + (index % 3) * 13;
  const nearRight = x > plotRight - 120;
  // A long description would cross the whole chart: the label is cut, the tooltip has it all.
  const label = marker.what.length > markerLabelMax ? `${marker.what.slice(0, markerLabelMax - 1)}…` : marker.what;
  return (
    `<g class="marker"><title>t=${marker.at.toFixed(1)} s: ${escapeHtml(marker.what)}</title>` +
    `<line x1="${coordinate(x)}" x2="${coordinate(x)}" y1="${plotTop}" y2="${plotBottom}"/>` +
    `<text x="${coordinate(nearRight ? x - 4 : x + 4)}" y="${labelY}" text-anchor="${nearRight ? 'end' : 'start'}">${escapeHtml(label)}</text></g>`
  );
}

function legendSvg(series: Series[]): string {
  let x = plotLeft;
  const items = series.map((s) => {
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    const item =
      `<line x1="${x}" x2="${x + 22}" y1="20" y2="20" stroke="${s.color}"${dash}/>` +
      `<text x="${x + 27}" y="20" dy="0.32em">${escapeHtml(s.name)}</text>`;
    x += 40 + s.name.length * 7;
    return item;
  });
  return `<g class="legend">${items.join('')}</g>`;
}

// ---------------------------------------------------------------------------------------
// HTML page

const colors = {
  sent: '#1f77b4',
  acked: '#2ca02c',
  read: '#9467bd',
  failed: '#d62728',
  p50: '#2ca02c',
  p99: '#ff7f0e',
  max: '#d62728',
  devices: '#1f77b4',
  rss: '#8c564b',
  cpu: '#e377c2',
};

type LatencyKind = 'latency' | 'ackLatency';

function charts(result: RunResult): string[] {
  const groups = buckets(result.samples, chartPointsMax);
  const lastAt = result.samples.length > 0 ? result.samples[result.samples.length - 1].at : 0;
  const xMax = Math.max(result.durationSeconds, lastAt, ...result.actions.map((a) => a.at), 1);
  const perPoint = groups.length > 0 ? groups[0].length : 1;
  const chart = (title: string, id: string, yLabel: string, series: Series[], merge: 'mean' | 'max', logAtRatio?: number) => {
    const note = perPoint > 1 ? `each point is the ${merge === 'max' ? 'worst' : 'mean'} of ${perPoint} seconds` : undefined;
    return section(title, svgChart({ id, title, yLabel, series, xMax, markers: result.actions, logAtRatio }), note);
  };
  // A second in which nothing was read has no latency percentiles: a gap, not zero.
  const latency = (kind: LatencyKind, pick: (p: Percentiles) => number) => (s: Sample) => (s[kind].count > 0 ? pick(s[kind]) : null);
  const latencySeries = (kind: LatencyKind) => [
    seriesOf(groups, 'p50', colors.p50, latency(kind, (p) => p.p50), 'max'),
    seriesOf(groups, 'p99', colors.p99, latency(kind, (p) => p.p99), 'max'),
    seriesOf(groups, 'max', colors.max, latency(kind, (p) => p.max), 'max'),
  ];
  const throughput = [
    seriesOf(groups, 'sent', colors.sent, (s) => s.sent, 'mean'),
    seriesOf(groups, 'acked', colors.acked, (s) => s.acked, 'mean', true),
    seriesOf(groups, 'read', colors.read, (s) => s.read, 'mean'),
  ];
  if (result.totals.failed > 0) throughput.push(seriesOf(groups, 'failed', colors.failed, (s) => s.failed, 'mean'));
  const devices = seriesOf(groups, 'connected', colors.devices, (s) => s.devicesConnected, 'mean');
  const out = [
    chart('Throughput', 'chart-throughput', 'events/s', throughput, 'mean'),
    chart('Produce-to-consume latency', 'chart-latency', 'ms', latencySeries('latency'), 'max', 50),
    chart('Send-to-ack latency', 'chart-ack-latency', 'ms', latencySeries('ackLatency'), 'max', 50),
    chart('Devices connected', 'chart-devices', 'devices', [devices], 'mean'),
  ];
  if (!result.samples.some((s) => s.nodeRssMiB !== null || s.nodeCpuPercent !== null)) {
    const why = 'No node figures: the simulator did not start the node, so it does not know its process.';
    return [...out, section('Node', `<p class="note">${why}</p>`)];
  }
  const rss = seriesOf(groups, 'RSS MiB', colors.rss, (s) => s.nodeRssMiB, 'mean');
  const cpu = seriesOf(groups, 'CPU %', colors.cpu, (s) => s.nodeCpuPercent, 'mean');
  return [...out, chart('Node RSS', 'chart-node-rss', 'RSS MiB', [rss], 'mean'), chart('Node CPU', 'chart-node-cpu', '% of one core', [cpu], 'mean')];
}

function section(title: string, body: string, note?: string): string {
  return `<section><h2>${escapeHtml(title)}</h2>${note ? `<p class="note">${escapeHtml(note)}</p>` : ''}\n${body}\n</section>`;
}

function headAndRows(rows: string[][]): [string[], string[][]] {
  return [rows[0], rows.slice(1)];
}

function htmlTable(head: string[], rows: string[][], numericFrom = 1): string {
  const cell = (tag: string, text: string, i: number) => `<${tag}${i >= numericFrom ? ' class="num"' : ''}>${escapeHtml(text)}</${tag}>`;
  return (
    `<table><thead><tr>${head.map((h, i) => cell('th', h, i)).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((c, i) => cell('td', c, i)).join('')}</tr>`).join('\n')}</tbody></table>`
  );
}

function totalsSections(result: RunResult): string[] {
  const t = result.totals;
  const rss = nodeFigures(result.samples, (s) => s.nodeRssMiB);
  const cpu = nodeFigures(result.samples, (s) => s.nodeCpuPercent);
  const connect = t.connectSeconds === null ? 'not all devices connected' : `all in ${formatSeconds(t.connectSeconds)}`;
  const nodeRows = [
    ['node RSS MiB (peak / avg)', rss ? `${rss.peak.toFixed(1)} / ${rss.avg.toFixed(1)}` : '-'],
    ['node CPU % (peak / avg)', cpu ? `${cpu.peak.toFixed(1)} / ${cpu.avg.toFixed(1)}` : '-'],
  ];
  const errors = errorsByCount(t.errors);
  const actions = result.actions.map((a) => [a.at.toFixed(1), a.what]);
  return [
    section('Totals', htmlTable(...headAndRows(rateRows(result)))),
    section('Run', htmlTable(['', ''], [['connect', connect], ...nodeRows], 2)),
    section('Latency (ms)', htmlTable(...headAndRows(latencyRows(result)))),
    section('Errors', errors.length === 0 ? '<p>None.</p>' : htmlTable(['error', 'count'], errors.map(([name, count]) => [name, formatInt(count)]))),
    section('Actions', actions.length === 0 ? '<p>None.</p>' : htmlTable(['t (s)', 'what'], actions, 2)),
    nodeLimitsSection(result.nodeLimits),
  ];
}

function nodeLimitsSection(limits: NodeLimitCounts | null): string {
  if (limits === null) return section(nodeLimitsTitle, `<p>${escapeHtml(nodeLimitsUnknown)}.</p>`);
  // The count is a figure, the breakdown text: only the middle column is right-aligned.
  const rows = nodeLimitRows(limits).map(([what, count, by]) => `<tr><td>${escapeHtml(what)}</td><td class="num">${escapeHtml(count)}</td><td>${escapeHtml(by)}</td></tr>`);
  return section(nodeLimitsTitle, `<table><thead><tr><th></th><th class="num">count</th><th>by reason or limit</th></tr></thead><tbody>${rows.join('\n')}</tbody></table>`);
}

function verdictSection(result: RunResult): string {
  const v = result.verdict;
  const rows = [...verdictKinds.map((k) => [k.name, formatInt(k.count(result))]), ['acked', formatInt(v.acked)], ['read', formatInt(v.read)]];
  const examples = verdictKinds
    .filter((k) => k.examples(result).length > 0)
    .map((k) => {
      const codes = k.examples(result).map((e) => `<code>${escapeHtml(e)}</code>`);
      return `<p><strong>${escapeHtml(k.name)}</strong> (device seq): ${codes.join(' ')}</p>`;
    });
  const badge = `<p class="badge ${v.ok ? 'ok' : 'failed'}">VERDICT ${v.ok ? 'OK' : 'FAILED'}</p>`;
  return `<section id="verdict"><h2>Verdict</h2>${badge}${htmlTable(['', 'events'], rows)}${examples.join('\n')}</section>`;
}

const style = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:960px;padding:0 16px 40px;color:#222;background:#fff}
header{padding:16px 0;border-bottom:4px solid #2ca02c}header.failed{border-color:#d62728}
h1{margin:0 0 4px;font-size:22px;word-break:break-all}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;margin:0}.note{color:#666;font-size:12px;margin:0 0 6px}
.badge{display:inline-block;font-weight:700;font-size:18px;padding:4px 12px;border-radius:4px;color:#fff;margin:8px 0}
.badge.ok{background:#2ca02c}.badge.failed{background:#d62728}
table{border-collapse:collapse}th,td{padding:3px 12px 3px 0;text-align:left;border-bottom:1px solid #eee}
.num{text-align:right;font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 4px;margin-right:4px}
svg.chart{max-width:100%;height:auto;font-size:11px}svg .plot{fill:#fcfcfc;stroke:#ccc}
svg .grid{stroke:#eee}svg .tick,svg .axis{fill:#555}svg .axis{font-size:12px}svg .empty{fill:#999;font-size:16px}
svg polyline{fill:none;stroke-width:1.6;stroke-linejoin:round}svg .legend line{stroke-width:3}svg .legend text{fill:#333}
svg .marker line{stroke:#444;stroke-dasharray:3 3}svg .marker text{fill:#444;font-weight:600}
`;

export function htmlReport(result: RunResult): string {
  const ok = result.verdict.ok;
  const name = escapeHtml(result.scenario);
  const meta =
    `${count(result.devices, 'device')}, ${count(result.workers, 'worker')}, ${formatSeconds(result.durationSeconds)}, ` +
    `node ${result.nodeUrl}, started ${result.startedAt}`;
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>Tributary simulator: ${name}: ${ok ? 'OK' : 'FAILED'}</title>`,
    `<style>${style}</style></head><body>`,
    `<header class="${ok ? 'ok' : 'failed'}"><h1>Tributary simulator: ${name}</h1><p class="meta">${escapeHtml(meta)}</p>`,
    `<p class="badge ${ok ? 'ok' : 'failed'}">VERDICT ${ok ? 'OK' : 'FAILED'}</p></header>`,
    ...totalsSections(result),
    ...charts(result),
    verdictSection(result),
    '</body></html>',
    '',
  ].join('\n');
}
