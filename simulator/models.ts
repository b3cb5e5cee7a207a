// Sensor models: what each virtual device reads. Every model draws from its own seeded PRNG,
// so a scenario's seed and a device's index fix its readings: a failing run can be replayed.

import { mulberry32 } from '../protocol/prng.js';
import type { ModelKind } from './scenario.js';

export { mulberry32 };

/** One seed per device from the scenario's seed and the device's index (a 32-bit mix). */
export function deviceSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Standard normal draw (Box-Muller). */
function gaussian(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export interface SensorModel {
  readonly kind: ModelKind;
  /** The next reading. */
  next(): unknown;
}

/** Bounds of the temperature walk, °C: a sensor that reads outside them is broken, not warm. */
export const TEMPERATURE_MIN_C = -40;
export const TEMPERATURE_MAX_C = 85;

/** A random walk around a set point, pulled back towards it and clamped to the sensor's range. */
export class TemperatureModel implements SensorModel {
  readonly kind = 'temperature';
  private celsius: number;
  private readonly setPoint: number;

  constructor(private readonly random: () => number) {
    this.setPoint = 15 + random() * 15;
    this.celsius = this.setPoint;
  }

  next(): { c: number } {
    // Mean reversion keeps a long run near the set point, as a regulated room does.
    this.celsius += 0.05 * (this.setPoint - this.celsius) + 0.3 * gaussian(this.random);
    this.celsius = Math.min(TEMPERATURE_MAX_C, Math.max(TEMPERATURE_MIN_C, this.celsius));
    return { c: Math.round(this.celsius * 100) / 100 };
  }
}

/** Chance per reading that a burst starts, and its length in readings. */
export const VIBRATION_BURST_PROBABILITY = 0.02;
const VIBRATION_BURST_READINGS = 10;
export const VIBRATION_QUIET_MAX_G = 0.5;
export const VIBRATION_BURST_MAX_G = 8;

/** Low background vibration (RMS g) with Poisson bursts of high amplitude: a machine hitting something. */
export class VibrationModel implements SensorModel {
  readonly kind = 'vibration';
  private burstLeft = 0;

  constructor(private readonly random: () => number) {}

  next(): { g: number; burst: boolean } {
    // One Bernoulli draw per reading: bursts arrive as a Poisson process in reading time.
    if (this.burstLeft === 0 && this.random() < VIBRATION_BURST_PROBABILITY) this.burstLeft = VIBRATION_BURST_READINGS;
    const burst = this.burstLeft > 0;
    if (burst) this.burstLeft -= 1;
    const g = burst ? 2 + this.random() * (VIBRATION_BURST_MAX_G - 2) : Math.abs(gaussian(this.random)) * 0.1;
    return { g: Math.round(Math.min(g, burst ? VIBRATION_BURST_MAX_G : VIBRATION_QUIET_MAX_G) * 1000) / 1000, burst };
  }
}

/** A vehicle moving along a heading that drifts, at a speed that varies; positions with GPS noise. */
export class GpsModel implements SensorModel {
  readonly kind = 'gps';
  private lat: number;
  private lon: number;
  private headingRad: number;
  private speedMps: number;

  constructor(private readonly random: () => number, private readonly stepSeconds = 1) {
    // Somewhere in a 1° box, like a fleet in one region.
    this.lat = 48 + random();
    this.lon = 2 + random();
    this.headingRad = random() * 2 * Math.PI;
    this.speedMps = 5 + random() * 20;
  }

  next(): { lat: number; lon: number; speed: number } {
    this.headingRad += 0.1 * gaussian(this.random);
    this.speedMps = Math.min(40, Math.max(0, this.speedMps + gaussian(this.random)));
    const metres = this.speedMps * this.stepSeconds;
    this.lat += (metres * Math.cos(this.headingRad)) / 111_320;
    this.lon += (metres * Math.sin(this.headingRad)) / (111_320 * Math.cos((this.lat * Math.PI) / 180));
    // Keep on the globe: a long run near a pole wraps instead of leaving the valid range.
    this.lat = Math.min(89.9, Math.max(-89.9, this.lat));
    this.lon = ((((this.lon + 180) % 360) + 360) % 360) - 180;
    const noise = () => gaussian(this.random) * 3e-5; // about 3 m
    return { lat: Number((this.lat + noise()).toFixed(6)), lon: Number((this.lon + noise()).toFixed(6)), speed: Math.round(this.speedMps * 10) / 10 };
  }
}

export const STATUS_STATES = ['ok', 'degraded', 'maintenance', 'fault'] as const;
/** Chance per reading that the state changes: state changes are rare events. */
export const STATUS_CHANGE_PROBABILITY = 0.01;

/** A device's state, reported every reading, changing rarely. */
export class StatusModel implements SensorModel {
  readonly kind = 'status';
  private state: (typeof STATUS_STATES)[number] = 'ok';

  constructor(private readonly random: () => number) {}

  next(): { state: string; changed: boolean } {
    let changed = false;
    if (this.random() < STATUS_CHANGE_PROBABILITY) {
      const others = STATUS_STATES.filter((s) => s !== this.state);
      this.state = others[Math.floor(this.random() * others.length)];
      changed = true;
    }
    return { state: this.state, changed };
  }
}

export function createModel(kind: ModelKind, random: () => number): SensorModel {
  switch (kind) {
    case 'temperature':
      return new TemperatureModel(random);
    case 'vibration':
      return new VibrationModel(random);
    case 'gps':
      return new GpsModel(random);
    case 'status':
      return new StatusModel(random);
  }
}

/**
 * The gap before a device's next event, ms: the mean gap (1 / rate) times a uniform factor
 * in 1 ± jitter, so the mean rate holds and devices drift apart instead of firing in step.
 */
export function nextGapMs(ratePerSecond: number, jitter: number, random: () => number): number {
  const meanMs = 1000 / ratePerSecond;
  return meanMs * (1 + jitter * (2 * random() - 1));
}
