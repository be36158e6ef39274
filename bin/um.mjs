#!/usr/bin/env node
// The `um` command. Sources are TypeScript, loaded through tsx (a runtime dependency), so a fresh
// clone runs with `npm install && npm start` and no build step.
import { register } from 'tsx/esm/api';

// kafkajs prints a notice about its v2 partitioner change on every producer; we use murmur2 on purpose
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

register();
// before anything loads kafkajs (see the file)
await import('../runtime/kafkajs-preload.ts');
await import('../cli/main.ts');
