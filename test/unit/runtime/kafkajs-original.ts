/**
 * A kafkajs module as kafkajs ships it, compiled from its own file whatever Node's module cache
 * holds (the preload puts the engine's replacements there): the reference the replacements are
 * tested against.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);

export function kafkajsOriginal<T>(id: string): T {
  const file = require.resolve(id);
  const { Module } = require('node:module') as {
    Module: (new (
      id: string,
    ) => NodeJS.Module & { _compile(src: string, file: string): void; filename: string; paths: string[] }) & {
      _nodeModulePaths(dir: string): string[];
    };
  };
  const m = new Module(file);
  m.filename = file;
  m.paths = Module._nodeModulePaths(dirname(file));
  m._compile(readFileSync(file, 'utf8'), file);
  return m.exports as T;
}
