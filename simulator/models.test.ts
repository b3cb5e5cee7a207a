import { describe, expect, it } from 'vitest';
import { AckedRanges } from './device.js';
import {
  createModel,
  deviceSeed,
  GpsModel,
  mulberry32,
  nextGapMs,
  STATUS_CHANGE_PROBABILITY,
  STATUS_STATES,
  StatusModel,
  TEMPERATURE_MAX_C,
  TEMPERATURE_MIN_C,
  TemperatureModel,
  VIBRATION_BURST_MAX_G,
  VIBRATION_BURST_PROBABILITY,
  VIBRATION_QUIET_MAX_G,
  VibrationModel,
} from './models.js';
import { MODEL_KINDS } from './scenario.js';

const READINGS = 20_000;

describe('sensor models', () => {
  it('are determined by their seed, and differ between seeds', () => {
    for (const kind of MODEL_KINDS) {
      const run = (seed: number) => {
        const m = createModel(kind, mulberry32(seed));
        return Array.from({ length: 200 }, () => m.next());
      };
      expect(run(42)).toEqual(run(42));
      if (kind !== 'status') expect(run(42)).not.toEqual(run(43));
    }
    expect(deviceSeed(1, 0)).toBe(deviceSeed(1, 0));
    expect(new Set(Array.from({ length: 1000 }, (_, i) => deviceSeed(1, i))).size).toBe(1000);
  });

  it('temperature walks within the sensor range, near its set point', () => {
    const m = new TemperatureModel(mulberry32(3));
    const values = Array.from({ length: READINGS }, () => m.next().c);
    for (const c of values) {
      expect(c).toBeGreaterThanOrEqual(TEMPERATURE_MIN_C);
      expect(c).toBeLessThanOrEqual(TEMPERATURE_MAX_C);
    }
    // Mean reversion: a regulated room, not a drift to the bounds.
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    expect(mean).toBeGreaterThan(10);
    expect(mean).toBeLessThan(35);
    // A walk: consecutive readings are close.
    for (let i = 1; i < values.length; i++) expect(Math.abs(values[i] - values[i - 1])).toBeLessThan(5);
  });

  it('vibration is quiet with bursts of high amplitude, at about the burst rate', () => {
    const m = new VibrationModel(mulberry32(5));
    let burstStarts = 0;
    let inBurst = false;
    for (let i = 0; i < READINGS; i++) {
      const r = m.next();
      expect(r.g).toBeGreaterThanOrEqual(0);
      expect(r.g).toBeLessThanOrEqual(r.burst ? VIBRATION_BURST_MAX_G : VIBRATION_QUIET_MAX_G);
      if (r.burst) expect(r.g).toBeGreaterThanOrEqual(2);
      if (r.burst && !inBurst) burstStarts += 1;
      inBurst = r.burst;
    }
    // Bursts start only from quiet readings, so fewer than probability * readings; well above zero.
    expect(burstStarts).toBeGreaterThan(READINGS * VIBRATION_BURST_PROBABILITY * 0.5);
    expect(burstStarts).toBeLessThan(READINGS * VIBRATION_BURST_PROBABILITY * 1.2);
  });

  it('gps moves along a track at a plausible speed and stays on the globe', () => {
    const m = new GpsModel(mulberry32(9));
    let prev = m.next();
    for (let i = 0; i < READINGS; i++) {
      const p = m.next();
      expect(Math.abs(p.lat)).toBeLessThanOrEqual(90);
      expect(Math.abs(p.lon)).toBeLessThanOrEqual(180);
      expect(p.speed).toBeGreaterThanOrEqual(0);
      expect(p.speed).toBeLessThanOrEqual(40);
      // One second at most 40 m/s plus noise: well under 0.001° of latitude (111 m).
      if (Math.abs(p.lon - prev.lon) < 1) expect(Math.abs(p.lat - prev.lat)).toBeLessThan(0.001);
      prev = p;
    }
  });

  it('status changes rarely, between known states', () => {
    const m = new StatusModel(mulberry32(11));
    let changes = 0;
    let last = 'ok';
    for (let i = 0; i < READINGS; i++) {
      const r = m.next();
      expect(STATUS_STATES).toContain(r.state);
      if (r.changed) {
        changes += 1;
        expect(r.state).not.toBe(last);
      } else expect(r.state).toBe(last);
      last = r.state;
    }
    expect(changes).toBeGreaterThan(READINGS * STATUS_CHANGE_PROBABILITY * 0.7);
    expect(changes).toBeLessThan(READINGS * STATUS_CHANGE_PROBABILITY * 1.3);
  });
});

describe('send rates', () => {
  it('keeps the mean rate and bounds each gap by the jitter', () => {
    const random = mulberry32(1);
    const gaps = Array.from({ length: READINGS }, () => nextGapMs(4, 0.5, random));
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(125);
      expect(g).toBeLessThanOrEqual(375);
    }
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    expect(mean).toBeGreaterThan(245);
    expect(mean).toBeLessThan(255);
    expect(nextGapMs(2, 0, random)).toBe(500);
  });
});

describe('acknowledged ranges', () => {
  it('merges in-order and out-of-order acks into the fewest ranges', () => {
    const r = new AckedRanges();
    for (const s of [0, 1, 2, 5, 6, 4, 9, 3, 3, 8]) r.add(s);
    expect(r.toArray()).toEqual([[0, 6], [8, 9]]);
    r.add(7);
    expect(r.toArray()).toEqual([[0, 9]]);
  });
});
