import { describe, expect, it } from 'vitest';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { ANONYMOUS, authorize, isAllowed, type Principal } from './acl.js';

const device: Principal = { name: 'device:1', role: 'device', produce: ['sensors.*'], consume: ['commands.dev-1'] };
const app: Principal = { name: 'app:1', role: 'app', produce: [], consume: ['sensors.*', 'alarms'] };
const node: Principal = { name: 'node:1', role: 'node', produce: [], consume: [] };
const admin: Principal = { name: 'admin:1', role: 'admin', produce: [], consume: [] };

describe('ACLs', () => {
  it.each([
    [device, 'produce', 'sensors.temp', true],
    [device, 'produce', 'alarms', false],
    [device, 'consume', 'commands.dev-1', true],
    [device, 'consume', 'commands.dev-2', false],
    [device, 'consume', 'sensors.temp', false],
    [device, 'describe', 'sensors.temp', true],
    [device, 'describe', 'alarms', false],
    [device, 'createTopics', 'sensors.new', false],
    [app, 'consume', 'alarms', true],
    [app, 'produce', 'alarms', false],
    [app, 'deleteTopics', 'alarms', false],
    [node, 'produce', 'anything', true],
    [node, 'consume', 'anything', true],
    [node, 'createTopics', 'anything', false],
    [admin, 'createTopics', 'anything', true],
    [admin, 'deleteTopics', 'anything', true],
    [ANONYMOUS, 'deleteTopics', 'anything', true],
  ] as const)('%o %s %s: %s', (principal, action, topic, allowed) => {
    expect(isAllowed(principal, action, topic)).toBe(allowed);
  });

  it('a refusal is UNAUTHORIZED naming who, what and which topic', () => {
    let caught: unknown;
    try {
      authorize(device, 'produce', 'alarms');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TributaryError);
    expect((caught as TributaryError).code).toBe(Errors.UNAUTHORIZED.code);
    expect((caught as TributaryError).message).toMatch(/device:1 may not produce to 'alarms'/);
    expect(() => authorize(device, 'produce', 'sensors.x')).not.toThrow();
  });
});
