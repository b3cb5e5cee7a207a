import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from './histogram.js';
import { buckets, chartPointsMax, escapeHtml, htmlReport, terminalSummary } from './report.js';
import { FullFleetWindow } from './run.js';
import type { Percentiles, RunResult, Sample } from './types.js';

// Fixtures: RunResults as the engine would hand them over, each built to exercise one
// part of the reports.

const noLatency: Percentiles = { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };

function percentiles(count: number, p50: number): Percentiles {
  return { count, p50, p90: p50 * 2, p99: p50 * 4, p999: p50 * 8, max: p50 * 10 };
}

function sample(at: number, overrides: Partial<Sample> = {}): Sample {
  return {
    at,
    devicesConnected: 200,
    sent: 200,
    acked: 200,
    failed: 0,
    read: 200,
    latency: percentiles(200, 3),
    ackLatency: percentiles(200, 1.5),
    nodeRssMiB: 60 + at,
    nodeCpuPercent: 40,
    errors: 0,
    ...overrides,
  };
}

function run(overrides: Partial<RunResult> = {}): RunResult {
  const samples = overrides.samples ?? Array.from({ length: 30 }, (_, i) => sample(i + 1, i === 4 ? { sent: 650, acked: 640, read: 610 } : {}));
  return {
    scenario: 'steady',
    startedAt: '2026-11-27T10:00:00.000Z',
    durationSeconds: 30,
    devices: 200,
    workers: 2,
    nodeUrl: 'ws://127.0.0.1:7400/v1',
    samples,
    totals: {
      sent: 12_345,
      acked: 12_340,
      failed: 5,
      read: 12_340,
      latency: { count: 12_340, p50: 3.25, p90: 6.5, p99: 13, p999: 26, max: 123.4 },
      ackLatency: { count: 12_340, p50: 1.5, p90: 3, p99: 6, p999: 12, max: 15 },
      connectSeconds: 2.5,
      allConnected: {
        fromSeconds: 3,
        toSeconds: 30,
        latency: { count: 11_000, p50: 3, p90: 6, p99: 12, p999: 24, max: 48 },
        ackLatency: { count: 11_000, p50: 1.25, p90: 2.5, p99: 5, p999: 10, max: 14 },
      },
      errors: { ECONNRESET: 3, TIMEOUT: 2 },
    },
    actions: [],
    nodeLimits: { refused: {}, evicted: 0, limitsReached: {} },
    verdict: {
      lost: 0,
      duplicated: 0,
      outOfOrder: 0,
      unackedSeen: 2,
      acked: 12_340,
      read: 12_342,
      examples: { lost: [], duplicated: [], outOfOrder: [] },
      ok: true,
    },
    ...overrides,
  };
}

const hostileName = `<script>alert("x")</script> 'quoted' & "double"`;

function failedRun(): RunResult {
  const healthy = run();
  return run({
    scenario: hostileName,
    totals: { ...healthy.totals, errors: { '<b>ECONNREFUSED</b>': 7 } },
    actions: [{ at: 12, what: '<img src=x onerror=alert(1)>' }],
    verdict: {
      ...healthy.verdict,
      lost: 3,
      duplicated: 1,
      examples: { lost: ['dev-1 5', 'dev-2 7', 'dev-<3> 9'], duplicated: ['dev-4 11'], outOfOrder: [] },
      ok: false,
    },
  });
}

/** A node SIGKILL at 10 s and its restart at 13 s: no reads between, and no node figures at all. */
function killRun(): RunResult {
  const samples = Array.from({ length: 30 }, (_, i) => {
    const at = i + 1;
    const down = at > 10 && at <= 13;
    return sample(at, {
      nodeRssMiB: null,
      nodeCpuPercent: null,
      read: down ? 0 : 200,
      latency: down ? noLatency : percentiles(200, 3),
      devicesConnected: down ? 0 : 200,
    });
  });
  return run({
    scenario: 'gateway-kill',
    nodeLimits: null,
    samples,
    actions: [
      { at: 10, what: 'kill node (SIGKILL)' },
      { at: 13, what: 'restart node' },
      { at: 29, what: 'restart-node (left down by the scenario; needed to finish)' },
    ],
  });
}

/** A storm the node's limits pushed back on: refusals by address, evictions, and a hostile label. */
function limitedRun(): RunResult {
  return run({
    scenario: 'storm',
    nodeLimits: {
      refused: { handshakes_per_address: 1200, connections_max: 3, '<b>x</b>': 0 },
      evicted: 40,
      limitsReached: { handshakesMax: 40, handshakesPerAddressMax: 1200, '<i>\x1b[2J</i>': 1 },
    },
  });
}

function emptyRun(): RunResult {
  return run({
    scenario: 'empty',
    durationSeconds: 0,
    samples: [],
    totals: { sent: 0, acked: 0, failed: 0, read: 0, latency: noLatency, ackLatency: noLatency, connectSeconds: null, allConnected: null, errors: {} },
    verdict: { lost: 0, duplicated: 0, outOfOrder: 0, unackedSeen: 0, acked: 0, read: 0, examples: { lost: [], duplicated: [], outOfOrder: [] }, ok: true },
  });
}

// Helpers that read the HTML back.

/** The chart with this id, as text. */
function svgById(html: string, id: string): string {
  const match = new RegExp(`<svg id="${id}"[\\s\\S]*?</svg>`).exec(html);
  expect(match, `chart ${id}`).not.toBeNull();
  return match![0];
}

/** Points of one series over all its polylines (a gap splits a series into several). */
function seriesPoints(svg: string, series: string): string[][] {
  const lines = [...svg.matchAll(new RegExp(`<polyline data-series="${series}" points="([^"]*)"`, 'g'))];
  return lines.map((m) => m[1].split(' '));
}

/**
 * Tags balance: every element opened is closed in order, apart from HTML void elements
 * and self-closed SVG ones. A stray '<' or '>' from an unescaped string breaks this.
 */
function expectBalancedTags(html: string): void {
  const voids = new Set(['meta', 'br', 'hr', 'img', 'input', 'link']);
  const stack: string[] = [];
  for (const m of html.replace(/^<!doctype html>/i, '').matchAll(/<(\/?)([a-zA-Z][\w-]*)[^<>]*?(\/?)>/g)) {
    const [, closing, tag, selfClosing] = m;
    if (selfClosing || voids.has(tag.toLowerCase())) continue;
    if (closing) expect(stack.pop(), `closing </${tag}>`).toBe(tag);
    else stack.push(tag);
  }
  expect(stack).toEqual([]);
  // Every '<' left over after removing well-formed tags would be markup from the data.
  expect(html.replace(/^<!doctype html>/i, '').replace(/<\/?[a-zA-Z][\w-]*[^<>]*>/g, '')).not.toMatch(/[<>]/);
}

function expectSelfContained(html: string): void {
  expect(html).not.toMatch(/<script/i);
  expect(html).not.toMatch(/<link\b/i);
  // Attributes inside tags only: an escaped example may well read 'src=' as text.
  expect(html).not.toMatch(/<[^<>]*\s(?:src|href)\s*=/i);
  expect(html).not.toMatch(/url\(|@import/i);
  expect(html).not.toMatch(/https?:\/\//i);
}

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

describe('terminalSummary', () => {
  it('prints the run, the totals, rates, latencies, errors and node figures, aligned', () => {
    const text = terminalSummary(run());
    expect(text).toContain('Tributary simulator: steady');
    expect(text).toContain('200 devices, 2 workers, 30.0 s, node ws://127.0.0.1:7400/v1');
    // Totals with average (total / duration) and peak (the busiest second) rates.
    expect(text).toMatch(/sent +12,345 +412 +650/);
    expect(text).toMatch(/acked +12,340 +411 +640/);
    expect(text).toMatch(/failed +5 +0\.2 +0/);
    expect(text).toMatch(/read +12,340 +411 +610/);
    expect(text).toContain('all 200 devices in 2.5 s');
    expect(text).toMatch(/send-to-ack +12,340 +1\.50 +3\.00 +6\.00 +12\.0 +15\.0/);
    expect(text).toMatch(/produce-to-consume +12,340 +3\.25 +6\.50 +13\.0 +26\.0 +123/);
    expect(text).toMatch(/send-to-ack, all connected \(3\.0-30\.0 s\) +11,000 +1\.25 +2\.50 +5\.00 +10\.0 +14\.0/);
    expect(text).toMatch(/produce-to-consume, all connected +11,000 +3\.00 +6\.00 +12\.0 +24\.0 +48\.0/);
    expect(text).toMatch(/ECONNRESET +3\n +TIMEOUT +2/);
    // RSS rises 61..90 over the samples: peak 90, mean 75.5; CPU is flat at 40.
    expect(text).toMatch(/RSS MiB +90\.0 +75\.5/);
    expect(text).toMatch(/CPU % +40\.0 +40\.0/);
    expect(text).toMatch(/unacked seen +2/);
    expect(text).toContain('VERDICT OK');
    expect(text).not.toContain('FAILED');
    expect(text).not.toContain('\x1b[');

    // Columns line up: the totals' numbers end at the same column.
    const rows = text.split('\n').filter((l) => /^ {2}(sent|acked|failed|read) +[\d,]+ +[\d.,]+ +[\d,]+$/.test(l));
    expect(rows).toHaveLength(4);
    expect(new Set(rows.map((r) => r.length)).size).toBe(1);
  });

  it('says FAILED with examples, and colors only when asked', () => {
    const result = failedRun();
    const text = terminalSummary(result);
    expect(text).toContain('VERDICT FAILED');
    expect(text).not.toContain('VERDICT OK');
    expect(text).toMatch(/lost +3/);
    expect(text).toMatch(/duplicated +1/);
    expect(text).toContain('lost e.g. (device seq): dev-1 5, dev-2 7, dev-<3> 9');
    expect(text).toContain('duplicated e.g. (device seq): dev-4 11');
    expect(text).toContain('t=12.0 s');

    const colored = terminalSummary(result, { color: true });
    expect(colored).toContain('\x1b[1;31mVERDICT FAILED\x1b[0m');
    expect(strip(colored)).toBe(text);
    expect(terminalSummary(run(), { color: true })).toContain('\x1b[1;32mVERDICT OK\x1b[0m');
  });

  it('lists the actions, leaves out absent node figures, and neutralizes control characters', () => {
    const text = terminalSummary({ ...killRun(), scenario: 'kill\x1b[2Jnow' });
    expect(text).toMatch(/t=10\.0 s +kill node \(SIGKILL\)\n +t=13\.0 s +restart node\n/);
    expect(text).not.toContain('RSS MiB');
    expect(text).toContain('kill?[2Jnow');
    expect(text).not.toContain('\x1b');
  });

  it("prints the node's own counts of its connection limits: zeros, the counts by reason, or why they are not known", () => {
    const healthy = terminalSummary(run());
    expect(healthy).toMatch(/Node limits \(its \/metrics, since its last start\)\n +connections refused +0\n +evicted before admission +0\n +limits reached +0\n/);

    const limited = terminalSummary(limitedRun());
    expect(limited).toMatch(/connections refused +1,203 +handshakes_per_address 1,200, connections_max 3\n/);
    expect(limited).toMatch(/evicted before admission +40 +handshakesMax\n/);
    expect(limited).toMatch(/limits reached +1,241 +handshakesPerAddressMax 1,200, handshakesMax 40, <i>\?\[2J<\/i> 1\n/);
    expect(limited).not.toContain('\x1b');
    const colored = terminalSummary(limitedRun(), { color: true });
    expect(colored).toMatch(/\x1b\[33m *1,203\x1b\[0m/);
    expect(strip(colored)).toBe(limited);
    expect(terminalSummary(run(), { color: true })).toMatch(/\n +connections refused +0\n +evicted before admission +0\n/);

    expect(terminalSummary(killRun())).toMatch(/Node limits[^\n]*\n +not known: read only from a node the simulator started\n/);
  });

  it('prints an empty run without NaN', () => {
    const text = terminalSummary(emptyRun());
    expect(text).not.toMatch(/NaN|Infinity|undefined/);
    expect(text).toMatch(/sent +0 +0\.0 +0/);
    expect(text).toMatch(/produce-to-consume +0 +- +- +- +- +-/);
    expect(text).toContain('not every one of the 200 devices connected');
    expect(text).not.toContain('all connected');
    expect(text).toMatch(/Errors\n +none/);
    expect(text).toContain('VERDICT OK');
  });
});

describe('terminalSummary wording', () => {
  it('counts one worker and one device in the singular, in both reports', () => {
    const one = run({ devices: 1, workers: 1 });
    const text = terminalSummary(one);
    expect(text).toContain('1 device, 1 worker, 30.0 s');
    expect(text).toContain('connect: the device in 2.5 s');
    expect(htmlReport(one)).toContain('1 device, 1 worker, 30.0 s');
    expect(terminalSummary(run({ devices: 1, workers: 1, totals: { ...run().totals, connectSeconds: null } }))).toContain('connect: the device never connected');
    expect(terminalSummary(run({ devices: 10_000, workers: 2 }))).toContain('10,000 devices, 2 workers, 30.0 s');
  });

  it('the "all connected" rows end at an outage: a node killed at 12 s, its held-back sends acknowledged at 3 s after the restart', () => {
    const window = new FullFleetWindow(200);
    const second = (at: number, connected: number, latencyMs: number) => {
      const acks = new LatencyHistogram();
      for (let i = 0; i < 100; i++) acks.record(latencyMs);
      window.sampled(sample(at, { devicesConnected: connected, ackLatency: acks.percentiles() }), acks);
    };
    for (let at = 1; at <= 12; at++) second(at, at < 3 ? 100 : 200, 1.5);
    window.acted('kill-node');
    for (let at = 13; at <= 15; at++) second(at, 0, 0);
    for (let at = 16; at <= 30; at++) second(at, 200, 3000);
    window.loadStopped();
    const healthy = run();
    const text = terminalSummary(run({ totals: { ...healthy.totals, allConnected: window.result(percentiles(900, 3)) } }));
    expect(text).toMatch(/send-to-ack, all connected \(3\.0-12\.0 s\) +900 +1\.50 +1\.50 +1\.50 +1\.50 +1\.50\n/);
  });
});

describe('htmlReport', () => {
  it('draws one SVG per chart with one point per second per series', () => {
    const html = htmlReport(run());
    expectBalancedTags(html);
    expectSelfContained(html);
    expect(html).toMatch(/send-to-ack, all connected \(3\.0-30\.0 s\)<\/t[dh]>\s*<td[^>]*>11,000<\/td>/);
    expect(html.match(/<svg\b/g)).toHaveLength(6);
    for (const id of ['chart-throughput', 'chart-latency', 'chart-ack-latency', 'chart-devices', 'chart-node-rss', 'chart-node-cpu']) svgById(html, id);
    const throughput = svgById(html, 'chart-throughput');
    for (const series of ['sent', 'acked', 'read', 'failed']) {
      // failed is drawn only because the run had failures; every second of it is zero.
      expect(seriesPoints(throughput, series).flat()).toHaveLength(30);
    }
    for (const series of ['p50', 'p99', 'max']) expect(seriesPoints(svgById(html, 'chart-latency'), series).flat()).toHaveLength(30);
    expect(seriesPoints(svgById(html, 'chart-node-rss'), 'RSS MiB').flat()).toHaveLength(30);
    expect(html).toContain('<header class="ok">');
    expect(html).toContain('VERDICT OK');
    expect(html).toContain('<td class="num">12,345</td>');
    expect(html).toContain('<td>ECONNRESET</td><td class="num">3</td>');
  });

  it('puts the busiest second at the top of the throughput axis and rising RSS on a rising line', () => {
    const throughput = svgById(htmlReport(run()), 'chart-throughput');
    const sent = seriesPoints(throughput, 'sent')[0].map((p) => p.split(',').map(Number));
    // Lower y is higher on the page: the 650 at 5 s is the highest point.
    const highest = sent.reduce((best, p) => (p[1] < best[1] ? p : best));
    expect(sent.indexOf(highest)).toBe(4);
    // x grows with time.
    for (let i = 1; i < sent.length; i++) expect(sent[i][0]).toBeGreaterThan(sent[i - 1][0]);
    const rss = seriesPoints(svgById(htmlReport(run()), 'chart-node-rss'), 'RSS MiB')[0].map((p) => Number(p.split(',')[1]));
    for (let i = 1; i < rss.length; i++) expect(rss[i]).toBeLessThan(rss[i - 1]);
  });

  it('escapes every string from the run: scenario, errors, actions, examples', () => {
    const html = htmlReport(failedRun());
    expectBalancedTags(html);
    expectSelfContained(html);
    expect(html).toContain(escapeHtml(hostileName));
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &#39;quoted&#39; &amp; &quot;double&quot;');
    expect(html).toContain('&lt;b&gt;ECONNREFUSED&lt;/b&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('<code>dev-&lt;3&gt; 9</code>');
    expect(html).toContain('<header class="failed">');
    expect(html).toContain('VERDICT FAILED');
  });

  it('marks the actions on every chart, breaks lines where there is no latency, and explains absent node figures', () => {
    const html = htmlReport(killRun());
    expectBalancedTags(html);
    expectSelfContained(html);
    // No node chart: four charts, each with both markers.
    expect(html.match(/<svg\b/g)).toHaveLength(4);
    expect(html).toContain('No node figures');
    for (const id of ['chart-throughput', 'chart-latency', 'chart-ack-latency', 'chart-devices']) {
      const svg = svgById(html, id);
      expect(svg.match(/<g class="marker">/g)).toHaveLength(3);
      expect(svg).toContain('>kill node (SIGKILL)</text>');
      expect(svg).toContain('>restart node</text>');
      // A long description is cut on the chart and whole in its tooltip.
      expect(svg).toContain('>restart-node (left down by the …</text>');
      expect(svg).toContain('<title>t=29.0 s: restart-node (left down by the scenario; needed to finish)</title>');
    }
    // Seconds 11..13 read nothing: their percentiles do not exist, so the line has a gap
    // (two polylines, 10 + 17 points) instead of dropping to zero.
    const p99 = seriesPoints(svgById(html, 'chart-latency'), 'p99');
    expect(p99.map((line) => line.length)).toEqual([10, 17]);
    // The marker sits where the 10th second's point is.
    const lastBefore = p99[0][9].split(',')[0];
    expect(svgById(html, 'chart-latency')).toContain(`<line x1="${lastBefore}" x2="${lastBefore}"`);
  });

  it('keeps a long run to a bounded number of points, keeping the worst latency', () => {
    const seconds = 5_000;
    const samples = Array.from({ length: seconds }, (_, i) => sample(i + 1, i === 2_500 ? { latency: percentiles(200, 900) } : {}));
    const html = htmlReport(run({ samples, durationSeconds: seconds }));
    expectBalancedTags(html);
    const latency = svgById(html, 'chart-latency');
    for (const series of ['p50', 'p99', 'max']) {
      const points = seriesPoints(latency, series).flat();
      expect(points.length).toBeLessThanOrEqual(chartPointsMax);
      expect(points.length).toBeGreaterThan(chartPointsMax / 2);
    }
    expect(seriesPoints(svgById(html, 'chart-throughput'), 'sent').flat().length).toBeLessThanOrEqual(chartPointsMax);
    expect(html).toContain('each point is the worst of 5 seconds');
    // The 9,000 ms spike survives the merge, and spans enough to switch to a log axis.
    expect(latency).toContain('(log scale)');
    expect(latency).toContain('>10,000</text>');
    // Read the highest point of the max series back through the axis: 9,000 ms, not the
    // mean of its bucket.
    const ticks = [...latency.matchAll(/<text class="tick" x="\d+" y="([\d.]+)" text-anchor="end"[^>]*>([\d,.]+)<\/text>/g)].map((m) => [Number(m[1]), Number(m[2].replace(/,/g, ''))]);
    const [y1000, y10000] = [ticks.find((t) => t[1] === 1_000)![0], ticks.find((t) => t[1] === 10_000)![0]];
    const top = Math.min(...seriesPoints(latency, 'max').flat().map((p) => Number(p.split(',')[1])));
    const topMs = 10 ** (3 + (y1000 - top) / (y1000 - y10000));
    expect(topMs).toBeGreaterThan(8_800);
    expect(topMs).toBeLessThan(9_200);
    expect(html.length).toBeLessThan(1_000_000);
  });

  it('draws a single sample as a dot', () => {
    const html = htmlReport(run({ samples: [sample(1)], durationSeconds: 1 }));
    expectBalancedTags(html);
    const throughput = svgById(html, 'chart-throughput');
    expect(seriesPoints(throughput, 'sent')).toHaveLength(1);
    expect(seriesPoints(throughput, 'sent')[0]).toHaveLength(1);
    expect(throughput).toMatch(/<circle /);
  });

  it("shows the node's limit counts in a table, escaped, or says why they are not known", () => {
    const html = htmlReport(limitedRun());
    expectBalancedTags(html);
    expectSelfContained(html);
    expect(html).toContain('<tr><td>connections refused</td><td class="num">1,203</td><td>handshakes_per_address 1,200, connections_max 3</td></tr>');
    expect(html).toContain('<tr><td>evicted before admission</td><td class="num">40</td><td>handshakesMax</td></tr>');
    expect(html).toContain('&lt;i&gt;\x1b[2J&lt;/i&gt; 1');
    expect(html).not.toContain('<b>x</b>');
    const zeros = htmlReport(run());
    expect(zeros).toContain('<tr><td>limits reached</td><td class="num">0</td><td></td></tr>');
    expect(htmlReport(killRun())).toContain('<p>not known: read only from a node the simulator started.</p>');
  });

  it('renders an empty run: charts say there are no samples, no NaN anywhere', () => {
    const html = htmlReport(emptyRun());
    expectBalancedTags(html);
    expectSelfContained(html);
    expect(html).not.toMatch(/NaN|Infinity|undefined/);
    expect(html.match(/<svg\b/g)).toHaveLength(4);
    expect(html.match(/>no samples<\/text>/g)).toHaveLength(4);
    expect(html).not.toContain('<polyline');
    expect(html).toContain('not all devices connected');
    expect(html).toContain('VERDICT OK');
  });
});

describe('buckets', () => {
  it('splits into at most the limit, in order, losing nothing', () => {
    const items = Array.from({ length: 2_501 }, (_, i) => i);
    const groups = buckets(items, 1_000);
    expect(groups.length).toBeLessThanOrEqual(1_000);
    expect(groups.flat()).toEqual(items);
    expect(buckets(items.slice(0, 10), 1_000)).toHaveLength(10);
    expect(buckets([], 1_000)).toEqual([]);
  });
});
