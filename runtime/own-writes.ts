/**
 * The offsets of one partition that a task wrote itself and the broker acknowledged: the records a
 * store sent to its own changelog when that changelog is also the task's input (a table whose
 * topic is its store's changelog). Such records are in the store already; a task that finds the
 * broker holding records of that partition it has not fetched yet need not wait for them when they
 * are all its own (task.ts, `lagging`): only a record somebody else wrote there must be processed
 * in timestamp order. Kept as sorted, merged [start, end) ranges, dropped once passed.
 */
export class OwnWrites {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** An acknowledged offset of one of the task's own writes (usually the next one in order). */
  add(offset: number): void {
    const n = this.ends.length;
    if (n && this.ends[n - 1] === offset) {
      this.ends[n - 1] = offset + 1;
      return;
    }
    if (!n || offset > this.ends[n - 1]!) {
      this.starts.push(offset);
      this.ends.push(offset + 1);
      return;
    }
    // out of order (acknowledgements of one partition normally come in order): the first range
    // that does not end before the offset takes it, or it goes in front of that range
    let i = 0;
    while (this.ends[i]! < offset) i++;
    if (this.starts[i]! <= offset && offset < this.ends[i]!) return;
    if (this.ends[i] === offset) {
      this.ends[i] = offset + 1;
      if (i + 1 < this.ends.length && this.ends[i]! >= this.starts[i + 1]!) {
        this.ends[i] = this.ends[i + 1]!;
        this.starts.splice(i + 1, 1);
        this.ends.splice(i + 1, 1);
      }
    } else if (this.starts[i] === offset + 1) this.starts[i] = offset;
    else {
      this.starts.splice(i, 0, offset);
      this.ends.splice(i, 0, offset + 1);
    }
  }

  /** Whether every offset in [from, to) is an own write. Ranges below `from` are dropped. */
  covers(from: number, to: number): boolean {
    let drop = 0;
    while (drop < this.ends.length && this.ends[drop]! <= from) drop++;
    if (drop) {
      this.starts.splice(0, drop);
      this.ends.splice(0, drop);
    }
    let cur = from;
    for (let i = 0; i < this.ends.length && cur < to; i++) {
      if (this.starts[i]! > cur) return false;
      cur = this.ends[i]!;
    }
    return cur >= to;
  }

  /** The ranges held (for tests). */
  ranges(): [number, number][] {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }
}
