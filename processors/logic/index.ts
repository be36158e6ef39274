export * from './model.js';
export * from './decide.js';
export * from './learn.js';
export * from './rollout.js';
