import { describe, expect, it } from 'vitest';
import { TopologyError } from '../../../runtime/errors.js';
import type { Processor } from '../../../runtime/processor.js';
import { stringSerde } from '../../../runtime/serdes.js';
import { TopologyBuilder } from '../../../runtime/topology.js';

const noop = (): Processor => ({ process: () => undefined });
const src = (topic: string) => ({ topic, key: stringSerde, value: stringSerde });
const store = (name: string, extra: object = {}) => ({ name, key: stringSerde, value: stringSerde, ...extra });

function expectTopologyError(fn: () => unknown, code: string, ...words: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TopologyError);
  expect(err).toMatchObject({ code });
  for (const w of words) expect((err as Error).message).toContain(w);
}

/** events -> decide -> (out sink, prefs store); users table; a global table */
function sample() {
  return new TopologyBuilder()
    .source('events', src('mail-events'))
    .store(store('users-store', { changelog: { topic: 'users' }, inMemory: true }))
    .table({ name: 'users', topic: 'users', store: 'users-store', key: stringSerde, value: stringSerde })
    .processor('decide', noop, 'events', 'users')
    .processor('audit', noop, 'decide')
    .sink('out', src('decisions'), 'decide')
    .sink('audit-out', src('audit'), 'audit')
    .store(store('prefs'), 'decide')
    .store(store('scratch', { changelog: false, inMemory: true }), 'decide', 'audit')
    .connect('users-store', 'decide')
    .globalTable({ name: 'policies', topic: 'tenant-policies', key: stringSerde, value: stringSerde })
    .build();
}

describe('TopologyBuilder validation', () => {
  it('rejects an unknown parent', () => {
    expectTopologyError(
      () => new TopologyBuilder().source('s', src('t')).processor('p', noop, 'missing'),
      'UNKNOWN_PARENT',
      'p',
      'missing',
    );
  });

  it('rejects a duplicate node name', () => {
    expectTopologyError(
      () => new TopologyBuilder().source('s', src('t')).processor('s', noop, 's'),
      'DUPLICATE_NODE',
      's',
    );
  });

  it('rejects a sink as a parent', () => {
    expectTopologyError(
      () => new TopologyBuilder().source('s', src('t')).sink('k', src('o'), 's').processor('p', noop, 'k'),
      'SINK_PARENT',
      'k',
    );
  });

  it('rejects processors and sinks without parents', () => {
    expectTopologyError(() => new TopologyBuilder().processor('p', noop), 'NO_PARENT', 'p');
    expectTopologyError(() => new TopologyBuilder().sink('k', src('o')), 'NO_PARENT', 'k');
  });

  it('rejects a topology without sources', () => {
    expectTopologyError(() => new TopologyBuilder().build(), 'NO_SOURCE');
  });

  it('rejects an orphan source', () => {
    expectTopologyError(
      () => new TopologyBuilder().source('s', src('t')).sink('k', src('o'), 's').source('lonely', src('t2')).build(),
      'ORPHAN_SOURCE',
      'lonely',
    );
  });

  it('rejects a dead-end processor (no children, no stores) but accepts one that only writes a store', () => {
    expectTopologyError(
      () => new TopologyBuilder().source('s', src('t')).processor('p', noop, 's').build(),
      'DEAD_END',
      'p',
    );
    expect(() =>
      new TopologyBuilder().source('s', src('t')).processor('p', noop, 's').store(store('st'), 'p').build(),
    ).not.toThrow();
  });

  it('rejects a store attached to no processor', () => {
    expectTopologyError(
      () => new TopologyBuilder().source('s', src('t')).sink('k', src('o'), 's').store(store('idle')).build(),
      'UNUSED_STORE',
      'idle',
    );
  });

  it('rejects duplicate stores and global tables, unknown stores and processors on connect', () => {
    const b = () => new TopologyBuilder().source('s', src('t')).processor('p', noop, 's').store(store('st'), 'p');
    expectTopologyError(() => b().store(store('st'), 'p'), 'DUPLICATE_STORE', 'st');
    expectTopologyError(() => b().connect('nope', 'p'), 'UNKNOWN_STORE', 'nope');
    expectTopologyError(() => b().connect('st', 'ghost'), 'UNKNOWN_PROCESSOR', 'ghost');
    const g = { name: 'g', topic: 'gt', key: stringSerde, value: stringSerde };
    expectTopologyError(() => b().globalTable(g).globalTable(g), 'DUPLICATE_GLOBAL', 'g');
  });

  it('rejects a table whose store is undeclared or does not use the table topic as its changelog', () => {
    const table = { name: 'tbl', topic: 'users', store: 'st', key: stringSerde, value: stringSerde };
    expectTopologyError(() => new TopologyBuilder().table(table), 'UNKNOWN_STORE', 'st');
    for (const changelog of [undefined, 'internal' as const, false as const, { topic: 'other' }]) {
      expectTopologyError(
        () => new TopologyBuilder().store(store('st', { changelog })).table(table),
        'TABLE_CHANGELOG',
        'tbl',
        'users',
      );
    }
  });

  it('rejects two sources of the same topic', () => {
    expectTopologyError(
      () =>
        new TopologyBuilder()
          .source('one', src('t'))
          .source('two', src('t'))
          .processor('p', noop, 'one', 'two')
          .sink('k', src('o'), 'p')
          .build(),
      'DUPLICATE_SOURCE',
      'one',
      'two',
    );
    // a table reading a topic a source already reads
    expectTopologyError(
      () =>
        new TopologyBuilder()
          .source('one', src('users'))
          .sink('k', src('o'), 'one')
          .store(store('st', { changelog: { topic: 'users' } }))
          .table({ name: 'tbl', topic: 'users', store: 'st', key: stringSerde, value: stringSerde })
          .build(),
      'DUPLICATE_SOURCE',
      'users',
    );
  });

  it('wires parents and children both ways', () => {
    const t = sample();
    expect(t.nodes.get('decide')!.parents).toEqual(['events', 'users']);
    expect(t.nodes.get('events')!.children).toEqual(['decide']);
    expect(t.nodes.get('decide')!.children).toEqual(['audit', 'out']);
    expect(t.nodes.get('decide')!.stores).toEqual(['prefs', 'scratch', 'users-store']);
    expect(t.storeUsers.get('users-store')).toEqual(['users', 'decide']);
    expect(t.storeUsers.get('scratch')).toEqual(['decide', 'audit']);
  });
});

describe('Topology', () => {
  it('lists source topics in declaration order (tables included), sinks, and finds source nodes', () => {
    const t = sample();
    expect(t.sourceTopics()).toEqual(['mail-events', 'users']);
    expect(t.sinkTopics()).toEqual(['decisions', 'audit']);
    expect(t.sourceNodeFor('users').name).toBe('users');
    expect(t.sourceNodeFor('mail-events').kind).toBe('source');
    expectTopologyError(() => t.sourceNodeFor('decisions'), 'UNKNOWN_SOURCE', 'decisions');
  });

  it('resolves store changelogs: internal, source topic, not logged', () => {
    const resolved = sample().resolvedStores('my-app');
    const byName = Object.fromEntries(resolved.map((r) => [r.spec.name, r]));
    expect(Object.keys(byName)).toEqual(['users-store', 'prefs', 'scratch']);
    expect(byName['prefs']).toMatchObject({
      changelogTopic: 'my-app-prefs-changelog',
      sourceChangelog: false,
      processors: ['decide'],
    });
    expect(byName['users-store']).toMatchObject({
      changelogTopic: 'users',
      sourceChangelog: true,
      processors: ['users', 'decide'],
    });
    expect(byName['scratch']).toMatchObject({ changelogTopic: undefined, sourceChangelog: false });
    expect(sample().resolvedStores('other')[1]!.changelogTopic).toBe('other-prefs-changelog');
  });

  it('describe() names every node with its topics, edges and stores', () => {
    const text = sample().describe();
    const lines = text.split('\n');
    expect(lines[0]).toBe('Topology');
    expect(text).toContain('Source: events (topic: mail-events)');
    expect(text).toContain('Table source: users (topic: users, store: users-store)');
    expect(text).toContain('Processor: decide (stores: [prefs, scratch, users-store])');
    expect(text).toContain('Processor: audit (stores: [scratch])');
    expect(text).toContain('Sink: out (topic: decisions)');
    expect(text).toContain('Sink: audit-out (topic: audit)');
    // edges, right after their node
    const at = (head: string) => lines.findIndex((l) => l.includes(head));
    expect(lines[at('Processor: decide') + 1]).toBe('      --> audit, out');
    expect(lines[at('Processor: decide') + 2]).toBe('      <-- events, users');
    expect(lines[at('Source: events') + 1]).toBe('      --> decide');
    expect(lines[at('Sink: out') + 1]).toBe('      <-- decide');
    // stores and global tables
    expect(text).toContain('  Stores:');
    expect(text).toContain('prefs (rocksdb, changelog: <app>-prefs-changelog)');
    expect(text).toContain('users-store (in-memory, source topic as changelog: users)');
    expect(text).toContain('scratch (in-memory, not logged)');
    expect(text).toContain('policies (topic: tenant-policies)');
  });

  it('mermaid() is a flowchart with one edge per parent/child pair and a link per store', () => {
    const t = sample();
    const text = t.mermaid();
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^flowchart /);
    const edges = lines.filter((l) => l.includes(' --> ')).map((l) => l.trim());
    const expected = [...t.nodes.values()].flatMap((n) =>
      n.children.map((c) => `${n.name.replace(/-/g, '_')} --> ${c.replace(/-/g, '_')}`),
    );
    expect(edges.sort()).toEqual(expected.sort());
    expect(edges).toHaveLength(5);
    expect(lines.filter((l) => l.includes(' -.- store_'))).toHaveLength(5);
    // ids are sanitised: no "-" left in an id
    expect(text).toContain('audit_out[\\"audit"\\]');
    expect(text).toContain('events[/"mail-events"/]');
    expect(text).toContain('global_policies[("policies (global: tenant-policies)")]');
  });
});
