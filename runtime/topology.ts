/**
 * Declaring a topology: sources, processors, sinks, state stores, tables and global tables.
 *
 *   const t = new TopologyBuilder()
 *     .source('orders', { topic: 'orders', key: stringSerde, value: orderSerde })
 *     .processor('price', () => new Price(), 'orders')
 *     .sink('priced', { topic: 'priced-orders', key: stringSerde, value: pricedSerde }, 'price')
 *     .store({ name: 'prices', ... }, 'price')
 *     .build();
 *
 * `build()` validates the graph (unknown parents, orphan nodes, stores attached to nothing,
 * forward targets) and `describe()` / `mermaid()` render it.
 */
import { TopologyError } from './errors.js';
import type { ProcessorSupplier } from './processor.js';
import type { Serde } from './serdes.js';

export interface SourceSpec<K = unknown, V = unknown> {
  topic: string;
  key: Serde<K>;
  value: Serde<V>;
}

export interface SinkSpec<K = unknown, V = unknown> {
  topic: string;
  key: Serde<K>;
  value: Serde<V>;
  /**
   * Partition to write to. Default: the task's own partition when the sink topic is one of the
   * co-partitioned topics, else Kafka's default murmur2 partitioner on the key bytes.
   */
  partitioner?: 'task' | 'murmur2';
}

export interface StoreSpec<K = unknown, V = unknown> {
  name: string;
  key: Serde<K>;
  value: Serde<V>;
  /**
   * Where the store's changes are logged and restored from:
   *  - 'internal' (default): `<applicationId>-<store>-changelog`, compacted, created by the runtime;
   *  - { topic }: an existing compacted topic that is also the store's source (a table topic);
   *  - false: not logged (rebuilt empty).
   */
  changelog?: 'internal' | { topic: string } | false;
  /** write-back cache entries per task; 0 disables the cache */
  cacheMaxEntries?: number;
  /**
   * the cache's bytes per INSTANCE, shared evenly by the store's caches in the tasks the instance
   * holds (see CacheBudget); with `cacheMaxEntries` both bounds hold; 0 disables the cache
   */
  cacheMaxBytes?: number;
  /** a cached entry counts as key + value × this + a fixed overhead (default 1; see cacheEntryBytes) */
  cacheValueBytesFactor?: number;
  /**
   * Every write goes to the store and its changelog at once (the cache serves reads only), so
   * every change is emitted; default false (write-back: changes between commits collapse).
   */
  writeThrough?: boolean;
  /**
   * The store is keyed like the source records: before a batch is processed, the task reads the
   * batch's keys from it in one call (a multi-get into the cache).
   */
  prefetch?: boolean;
  /** in-memory instead of RocksDB */
  inMemory?: boolean;
}

export interface GlobalTableSpec<K = unknown, V = unknown> {
  name: string;
  topic: string;
  key: Serde<K>;
  value: Serde<V>;
}

export interface TableSpec<K = unknown, V = unknown> {
  /** processor node name of the table source */
  name: string;
  topic: string;
  store: string;
  key: Serde<K>;
  value: Serde<V>;
  /** decides whether an incoming record replaces the stored value; default: always */
  shouldApply?: (current: V | undefined, incoming: V) => boolean;
}

export type NodeKind = 'source' | 'processor' | 'sink' | 'table';

export interface NodeDef {
  name: string;
  kind: NodeKind;
  parents: string[];
  children: string[];
  stores: string[];
  supplier?: ProcessorSupplier;
  source?: SourceSpec;
  sink?: SinkSpec;
  table?: TableSpec;
}

export interface ResolvedStore {
  spec: StoreSpec;
  /** changelog topic or undefined when not logged */
  changelogTopic: string | undefined;
  /** true when the changelog is a source topic (not created by the runtime) */
  sourceChangelog: boolean;
  processors: string[];
}

export class Topology {
  constructor(
    readonly nodes: ReadonlyMap<string, NodeDef>,
    readonly stores: ReadonlyMap<string, StoreSpec>,
    readonly storeUsers: ReadonlyMap<string, string[]>,
    readonly globalTables: ReadonlyMap<string, GlobalTableSpec>,
  ) {}

  /** Source topics, in declaration order (these are co-partitioned: one task per partition). */
  sourceTopics(): string[] {
    const out: string[] = [];
    for (const n of this.nodes.values()) {
      const t = n.source?.topic ?? n.table?.topic;
      if (t && !out.includes(t)) out.push(t);
    }
    return out;
  }

  sinkTopics(): string[] {
    return [...new Set([...this.nodes.values()].flatMap((n) => (n.sink ? [n.sink.topic] : [])))];
  }

  /** The node that consumes a source topic. */
  sourceNodeFor(topic: string): NodeDef {
    for (const n of this.nodes.values()) if (n.source?.topic === topic || n.table?.topic === topic) return n;
    throw new TopologyError('UNKNOWN_SOURCE', `no source reads topic ${topic}`);
  }

  resolvedStores(applicationId: string): ResolvedStore[] {
    return [...this.stores.values()].map((spec) => {
      const cl = spec.changelog ?? 'internal';
      const changelogTopic =
        cl === false ? undefined : cl === 'internal' ? `${applicationId}-${spec.name}-changelog` : cl.topic;
      return {
        spec,
        changelogTopic,
        sourceChangelog: typeof cl === 'object',
        processors: this.storeUsers.get(spec.name) ?? [],
      };
    });
  }

  /** Readable text, one node per line, in the style of Kafka Streams' TopologyDescription. */
  describe(): string {
    const lines: string[] = ['Topology', '  Sub-topology: 0 (one task per partition of the co-partitioned sources)'];
    for (const n of this.nodes.values()) {
      let head: string;
      if (n.kind === 'source') head = `Source: ${n.name} (topic: ${n.source!.topic})`;
      else if (n.kind === 'table')
        head = `Table source: ${n.name} (topic: ${n.table!.topic}, store: ${n.table!.store})`;
      else if (n.kind === 'sink') head = `Sink: ${n.name} (topic: ${n.sink!.topic})`;
      else head = `Processor: ${n.name} (stores: [${n.stores.join(', ')}])`;
      lines.push(`    ${head}`);
      if (n.children.length) lines.push(`      --> ${n.children.join(', ')}`);
      if (n.parents.length) lines.push(`      <-- ${n.parents.join(', ')}`);
    }
    if (this.stores.size) {
      lines.push('  Stores:');
      for (const s of this.stores.values()) {
        const cl = s.changelog ?? 'internal';
        const where =
          cl === false
            ? 'not logged'
            : cl === 'internal'
              ? 'changelog: <app>-' + s.name + '-changelog'
              : `source topic as changelog: ${cl.topic}`;
        lines.push(`    ${s.name} (${s.inMemory ? 'in-memory' : 'rocksdb'}, ${where})`);
      }
    }
    if (this.globalTables.size) {
      lines.push('  Global tables (whole topic on every instance):');
      for (const g of this.globalTables.values()) lines.push(`    ${g.name} (topic: ${g.topic})`);
    }
    return lines.join('\n');
  }

  /** Mermaid flowchart of the same graph. */
  mermaid(): string {
    const id = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, '_');
    const lines = ['flowchart TD'];
    for (const n of this.nodes.values()) {
      if (n.kind === 'source') lines.push(`  ${id(n.name)}[/"${n.source!.topic}"/]`);
      else if (n.kind === 'table') lines.push(`  ${id(n.name)}[/"${n.table!.topic} (table)"/]`);
      else if (n.kind === 'sink') lines.push(`  ${id(n.name)}[\\"${n.sink!.topic}"\\]`);
      else lines.push(`  ${id(n.name)}("${n.name}")`);
      for (const c of n.children) lines.push(`  ${id(n.name)} --> ${id(c)}`);
      for (const s of n.stores) lines.push(`  ${id(n.name)} -.- store_${id(s)}[("${s}")]`);
    }
    for (const g of this.globalTables.values())
      lines.push(`  global_${id(g.name)}[("${g.name} (global: ${g.topic})")]`);
    return lines.join('\n');
  }
}

export class TopologyBuilder {
  private readonly nodes = new Map<string, NodeDef>();
  private readonly stores = new Map<string, StoreSpec>();
  private readonly storeUsers = new Map<string, string[]>();
  private readonly globals = new Map<string, GlobalTableSpec>();

  private addNode(def: NodeDef): this {
    if (this.nodes.has(def.name)) throw new TopologyError('DUPLICATE_NODE', `node ${def.name} is declared twice`);
    for (const p of def.parents) {
      const parent = this.nodes.get(p);
      if (!parent)
        throw new TopologyError(
          'UNKNOWN_PARENT',
          `node ${def.name}: parent ${p} is not declared (declare parents first)`,
        );
      if (parent.kind === 'sink')
        throw new TopologyError('SINK_PARENT', `node ${def.name}: ${p} is a sink and cannot have children`);
      parent.children.push(def.name);
    }
    this.nodes.set(def.name, def);
    return this;
  }

  source<K, V>(name: string, spec: SourceSpec<K, V>): this {
    return this.addNode({ name, kind: 'source', parents: [], children: [], stores: [], source: spec as SourceSpec });
  }

  processor<K, V>(name: string, supplier: ProcessorSupplier<K, V>, ...parents: string[]): this {
    if (!parents.length) throw new TopologyError('NO_PARENT', `processor ${name} needs at least one parent`);
    return this.addNode({
      name,
      kind: 'processor',
      parents,
      children: [],
      stores: [],
      supplier: supplier as ProcessorSupplier,
    });
  }

  sink<K, V>(name: string, spec: SinkSpec<K, V>, ...parents: string[]): this {
    if (!parents.length) throw new TopologyError('NO_PARENT', `sink ${name} needs at least one parent`);
    return this.addNode({ name, kind: 'sink', parents, children: [], stores: [], sink: spec as SinkSpec });
  }

  /** A key-value store, attached to the named processors. */
  store<K, V>(spec: StoreSpec<K, V>, ...processors: string[]): this {
    if (this.stores.has(spec.name)) throw new TopologyError('DUPLICATE_STORE', `store ${spec.name} is declared twice`);
    this.stores.set(spec.name, spec as StoreSpec);
    this.storeUsers.set(spec.name, []);
    for (const p of processors) this.connect(spec.name, p);
    return this;
  }

  /** Gives a processor access to a store declared earlier. */
  connect(storeName: string, processorName: string): this {
    const node = this.nodes.get(processorName);
    if (!node)
      throw new TopologyError('UNKNOWN_PROCESSOR', `store ${storeName}: processor ${processorName} is not declared`);
    if (!this.stores.has(storeName)) throw new TopologyError('UNKNOWN_STORE', `store ${storeName} is not declared`);
    if (!node.stores.includes(storeName)) node.stores.push(storeName);
    const users = this.storeUsers.get(storeName)!;
    if (!users.includes(processorName)) users.push(processorName);
    return this;
  }

  /**
   * A table: the topic is consumed as a co-partitioned source into `spec.store` (declared with
   * `changelog: { topic }` so the same topic restores it), and is its changelog.
   */
  table<K, V>(spec: TableSpec<K, V>): this {
    const store = this.stores.get(spec.store);
    if (!store) throw new TopologyError('UNKNOWN_STORE', `table ${spec.name}: store ${spec.store} is not declared`);
    const cl = store.changelog;
    if (typeof cl !== 'object' || cl.topic !== spec.topic)
      throw new TopologyError(
        'TABLE_CHANGELOG',
        `table ${spec.name}: store ${spec.store} must use the table topic ${spec.topic} as its changelog`,
      );
    this.addNode({
      name: spec.name,
      kind: 'table',
      parents: [],
      children: [],
      stores: [spec.store],
      table: spec as TableSpec,
    });
    this.storeUsers.get(spec.store)!.push(spec.name);
    return this;
  }

  globalTable<K, V>(spec: GlobalTableSpec<K, V>): this {
    if (this.globals.has(spec.name))
      throw new TopologyError('DUPLICATE_GLOBAL', `global table ${spec.name} is declared twice`);
    this.globals.set(spec.name, spec as GlobalTableSpec);
    return this;
  }

  build(): Topology {
    const sources = [...this.nodes.values()].filter((n) => n.kind === 'source' || n.kind === 'table');
    if (!sources.length) throw new TopologyError('NO_SOURCE', 'a topology needs at least one source');
    const topics = new Map<string, string>();
    for (const s of sources) {
      const t = s.source?.topic ?? s.table!.topic;
      if (topics.has(t))
        throw new TopologyError('DUPLICATE_SOURCE', `topic ${t} is read by both ${topics.get(t)} and ${s.name}`);
      topics.set(t, s.name);
    }
    for (const n of this.nodes.values()) {
      if (n.kind === 'source' && n.children.length === 0)
        throw new TopologyError('ORPHAN_SOURCE', `source ${n.name} has no children`);
      if (n.kind === 'processor' && n.children.length === 0 && n.stores.length === 0)
        throw new TopologyError(
          'DEAD_END',
          `processor ${n.name} has no children and no stores: its output goes nowhere`,
        );
    }
    for (const [store, users] of this.storeUsers)
      if (!users.length) throw new TopologyError('UNUSED_STORE', `store ${store} is attached to no processor`);
    return new Topology(new Map(this.nodes), new Map(this.stores), new Map(this.storeUsers), new Map(this.globals));
  }
}
