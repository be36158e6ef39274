/** OwnWrites: the acknowledged offsets of a task's own writes, as merged ranges (runtime/own-writes.ts). */
import { describe, expect, it } from 'vitest';
import { OwnWrites } from '../../../runtime/own-writes.js';

describe('OwnWrites', () => {
  it('merges offsets added in order into ranges; covers only what is all own', () => {
    const o = new OwnWrites();
    for (const x of [5, 6, 7, 10, 11]) o.add(x);
    expect(o.ranges()).toEqual([
      [5, 8],
      [10, 12],
    ]);
    expect(o.covers(5, 8)).toBe(true);
    expect(o.covers(6, 7)).toBe(true);
    expect(o.covers(5, 9)).toBe(false); // 8 is somebody else's
    expect(o.covers(4, 6)).toBe(false); // 4 too
    expect(o.covers(7, 7)).toBe(true); // an empty range
    expect(o.ranges()).toEqual([
      [5, 8],
      [10, 12],
    ]); // nothing passed yet: kept
    expect(o.covers(10, 12)).toBe(true);
    expect(o.ranges()).toEqual([[10, 12]]); // 5..7 passed
  });

  it('drops the ranges a position has passed', () => {
    const o = new OwnWrites();
    for (const x of [1, 2, 3, 7, 8, 20]) o.add(x);
    expect(o.covers(9, 10)).toBe(false);
    expect(o.ranges()).toEqual([[20, 21]]);
    expect(o.covers(20, 21)).toBe(true);
  });

  it('takes offsets out of order and merges them', () => {
    const o = new OwnWrites();
    for (const x of [10, 11, 3, 4, 12, 5, 9, 6, 7, 8, 8]) o.add(x);
    expect(o.ranges()).toEqual([[3, 13]]);
    expect(o.covers(3, 13)).toBe(true);
    const p = new OwnWrites();
    for (const x of [1, 5, 3]) p.add(x);
    expect(p.ranges()).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    p.add(2);
    p.add(4);
    expect(p.ranges()).toEqual([[1, 6]]);
  });

  it('answers as a set of offsets would, for offsets added in any order (seeded random)', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const o = new OwnWrites();
      const set = new Set<number>();
      for (let i = 0; i < 40; i++) {
        const x = rnd(60);
        o.add(x);
        set.add(x);
      }
      const ranges = o.ranges();
      // sorted, disjoint, not touching
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThan(ranges[i - 1]![1]);
      expect(ranges.flatMap(([a, b]) => Array.from({ length: b - a }, (_, k) => a + k))).toEqual(
        [...set].sort((a, b) => a - b),
      );
      const from = rnd(60);
      const to = from + rnd(8);
      let all = true;
      for (let x = from; x < to; x++) all &&= set.has(x);
      expect(o.covers(from, to)).toBe(all);
    }
  });
});
