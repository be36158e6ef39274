/**
 * What every fault suite shares: its own 3-node KRaft cluster (RF 3, min.insync.replicas 2) and
 * registry for the file, a temporary directory for state and logs (kept with UM_KEEP_TEST_LOGS=1),
 * and the service instances it started, killed at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startLocalStack, type LocalStack } from '../../scripts/kafka/local.js';
import { killAll, type ServiceInstance } from '../engine/service.js';

export interface FaultCluster {
  /** set once beforeAll has run */
  stack(): LocalStack;
  root: string;
  instances: ServiceInstance[];
}

/** Registers the suite's beforeAll/afterAll; call at the top level of a test file. */
export function faultCluster(name: string): FaultCluster {
  const root = mkdtempSync(join(tmpdir(), `um-${name}-`));
  const instances: ServiceInstance[] = [];
  let stack: LocalStack | undefined;
  beforeAll(async () => {
    stack = await startLocalStack({ nodes: 3 });
    // the integration helpers (readAll, ...) read these
    process.env.KAFKA_BROKERS = stack.brokers.join(',');
    process.env.SCHEMA_REGISTRY_URL = stack.registryUrl;
  }, 240_000);
  afterAll(async () => {
    await killAll(instances);
    await stack?.stop();
    if (process.env.UM_KEEP_TEST_LOGS !== '1') rmSync(root, { recursive: true, force: true });
  }, 120_000);
  return {
    stack: () => {
      if (!stack) throw new Error('the fault cluster is not started (beforeAll)');
      return stack;
    },
    root,
    instances,
  };
}
