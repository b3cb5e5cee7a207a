// Reading a node's /metrics in tests: the text, and one sample's value.

/** The Prometheus text a node on `port` serves. */
export async function scrapeMetrics(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/**
 * The value of the sample named exactly `series` (the name with its labels as the node
 * writes them, e.g. `tributary_connections_closed_total{reason="unauthorized"}`); NaN when
 * there is none.
 */
export function sampleOf(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

/** `sampleOf` on a fresh scrape. */
export async function metricSample(port: number, series: string): Promise<number> {
  return sampleOf(await scrapeMetrics(port), series);
}
