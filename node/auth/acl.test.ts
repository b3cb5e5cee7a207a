import { describe, expect, it } from 'vitest';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { ANONYMOUS, authorize, groupPatternsOf, isAllowed, refusalMessage, type Principal } from './acl.js';

const device: Principal = { name: 'device:1', key: 'key:1', role: 'device', produce: ['sensors.*'], consume: ['commands.dev-1'], groups: [] };
const app: Principal = { name: 'app:1', key: 'key:2', role: 'app', produce: [], consume: ['sensors.*', 'alarms'], groups: ['sensors.*', 'alarms'] };
const billing: Principal = { name: 'app:3', key: 'key:3', role: 'app', produce: [], consume: ['sensors.*'], groups: ['billing.*'] };
const node: Principal = { name: 'node:1', key: 'key:4', role: 'node', produce: [], consume: [], groups: ['*'] };
const admin: Principal = { name: 'admin:1', key: 'key:5', role: 'admin', produce: [], consume: [], groups: [] };

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
    // groups: by the principal's group patterns; admin and anonymous everything
    [device, 'group', 'sensors.temp', false],
    [app, 'group', 'sensors.dashboard', true],
    [app, 'group', 'billing', false],
    [billing, 'group', 'billing.eu', true],
    [billing, 'group', 'sensors.dashboard', false],
    [node, 'group', 'uplink-7', true],
    [admin, 'group', 'anything', true],
    [ANONYMOUS, 'group', 'anything', true],
    // a group id that looks internal is still only a group id
    [billing, 'group', '__billing', false],
    [node, 'group', '__uplink', true],
    // internal request kinds (ReplicaFetch): a node only, not even admin or anonymous
    [node, 'clusterAction', undefined, true],
    [admin, 'clusterAction', undefined, false],
    [ANONYMOUS, 'clusterAction', undefined, false],
    [app, 'clusterAction', undefined, false],
    [device, 'clusterAction', undefined, false],
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
    expect(refusalMessage(device, 'group', 'billing')).toBe("device:1 may not use group 'billing'");
  });

  describe('group patterns when the credential names none: the role decides', () => {
    it.each([
      [{ role: 'device', consume: ['commands.*'] }, []],
      [{ role: 'app', consume: ['sensors.*', 'alarms'] }, ['sensors.*', 'alarms']],
      [{ role: 'node', consume: [] }, ['*']],
      [{ role: 'admin', consume: [] }, ['*']],
    ] as const)('%o: %o', (credential, groups) => {
      expect(groupPatternsOf({ ...credential, consume: [...credential.consume] })).toEqual(groups);
    });

    it('a credential that names groups gets exactly those, except admin and node which get all', () => {
      expect(groupPatternsOf({ role: 'device', consume: [], groups: ['fleet-7'] })).toEqual(['fleet-7']);
      expect(groupPatternsOf({ role: 'app', consume: ['sensors.*'], groups: [] })).toEqual([]);
      expect(groupPatternsOf({ role: 'admin', consume: [], groups: [] })).toEqual(['*']);
      expect(groupPatternsOf({ role: 'node', consume: [], groups: ['x'] })).toEqual(['*']);
    });
  });
});
