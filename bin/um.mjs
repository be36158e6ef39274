#!/usr/bin/env node
// The `um` command. Sources are TypeScript, loaded through tsx (a runtime dependency), so a fresh
// clone runs with `npm install && npm start` and no build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
