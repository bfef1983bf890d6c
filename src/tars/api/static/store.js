// What the page shows, merged from two sources that race each other: REST snapshots and live
// events. Every live change gets a number from one page-wide sequence; a snapshot remembers the
// number current when it was requested, and when it arrives it cannot undo anything applied after
// that. So whichever order the two arrive in, the result is what the server holds — as long as
// every event after the snapshot's request is applied, which the live feed guarantees.

let sequence = 0;

/** Numbers one live change. */
export function nextSequence() {
  sequence += 1;
  return sequence;
}

/** The number a snapshot requested now must remember. */
export function currentSequence() {
  return sequence;
}

/**
 * Microseconds since the epoch of an ISO 8601 time, so that "…T10:00:00.123456+00:00" (events)
 * and "…T10:00:00.123456Z" (REST) order and compare alike; Date keeps only milliseconds.
 */
export function timeKey(iso) {
  if (!iso) return Number.POSITIVE_INFINITY; // not known yet: something this new is the newest
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(iso);
  if (!match) return Date.parse(iso) * 1000;
  const [, seconds, fraction = "", zone] = match;
  const millis = Date.parse(`${seconds}${zone || "Z"}`);
  return millis * 1000 + Number((fraction + "000000").slice(0, 6));
}

/**
 * Newest first by `created_at` (or the time `timeOf` reads), then by key, as the REST API orders
 * runs and evaluations (and insights, by `first_seen_at`).
 */
export function newestFirst(keyOf, timeOf = (item) => item.created_at) {
  return (a, b) => {
    const byTime = timeKey(timeOf(b)) - timeKey(timeOf(a));
    if (byTime !== 0 && !Number.isNaN(byTime)) return byTime;
    const ka = keyOf(a);
    const kb = keyOf(b);
    return ka < kb ? 1 : ka > kb ? -1 : 0;
  };
}

/**
 * Items keyed by id: runs by run_id, evaluations by id. A record is the last snapshot's item with
 * the fields of later events laid over it, each field stamped with the sequence of its event.
 */
export class LiveCollection {
  /**
   * @param {object} options
   * @param {(item: object) => string|number} options.keyOf
   * @param {number} [options.limit]     how many of the newest it keeps (what the page shows)
   * @param {(item: object) => boolean} [options.retain]  kept even beyond the limit (runs in progress)
   * @param {(item: object) => string} [options.timeOf]  the ISO time it is ordered by (`created_at`)
   */
  constructor({ keyOf, limit = Number.POSITIVE_INFINITY, retain = () => false, timeOf }) {
    this.keyOf = keyOf;
    this.limit = limit;
    this.retain = retain;
    this.compare = newestFirst(keyOf, timeOf);
    this.records = new Map();
    // key -> sequence of its removal, so that a snapshot requested earlier cannot bring it back
    this.removed = new Map();
    this.loaded = false;
  }

  /** Lays an event's fields over the item. */
  apply(data, seq) {
    const key = this.keyOf(data);
    let record = this.records.get(key);
    if (!record) {
      record = { rest: null, live: new Map(), touched: 0, merged: null };
      this.records.set(key, record);
    }
    for (const [field, value] of Object.entries(data)) record.live.set(field, { value, seq });
    record.touched = seq;
    record.merged = null;
    this.removed.delete(key);
    this.trim();
  }

  remove(key, seq) {
    this.records.delete(key);
    this.removed.set(key, seq);
  }

  /**
   * Replaces what the collection holds by a snapshot requested at sequence `asked`: its items win
   * over what was applied up to `asked`, and lose to what was applied after. Records the snapshot
   * does not hold go, unless an event touched them after `asked` (they are newer than it) or the
   * snapshot is `partial` (a few items fetched on their own, not the whole of what is shown).
   */
  applySnapshot(items, asked, { accept = () => true, partial = false } = {}) {
    const inSnapshot = new Set();
    for (const item of items) {
      const key = this.keyOf(item);
      if ((this.removed.get(key) ?? 0) > asked || !accept(item)) continue;
      inSnapshot.add(key);
      let record = this.records.get(key);
      if (!record) {
        record = { rest: null, live: new Map(), touched: 0, merged: null };
        this.records.set(key, record);
      }
      record.rest = item;
      for (const [field, stamped] of record.live) if (stamped.seq <= asked) record.live.delete(field);
      record.merged = null;
    }
    if (!partial) {
      for (const [key, record] of this.records) {
        if (!inSnapshot.has(key) && record.touched <= asked) this.records.delete(key);
      }
      for (const [key, seq] of this.removed) if (seq <= asked) this.removed.delete(key);
      this.loaded = true;
    }
    this.trim();
  }

  has(key) {
    return this.records.has(key);
  }

  get(key) {
    const record = this.records.get(key);
    return record ? this.merge(record) : undefined;
  }

  /** Newest first, at most `limit`. */
  values() {
    return this.all().slice(0, this.limit);
  }

  /** Newest first, with what is kept beyond the limit. */
  all() {
    return [...this.records.values()].map((record) => this.merge(record)).sort(this.compare);
  }

  merge(record) {
    if (!record.merged) {
      const merged = { ...(record.rest || {}) };
      for (const [field, stamped] of record.live) merged[field] = stamped.value;
      record.merged = merged;
    }
    return record.merged;
  }

  // Only what the page can show stays in memory, however long it stays open.
  trim() {
    if (this.records.size <= this.limit) return;
    const sorted = this.all();
    for (const item of sorted.slice(this.limit)) {
      if (!this.retain(item)) this.records.delete(this.keyOf(item));
    }
  }
}

/**
 * A run's training reward per episode (episode n at index n-1): the snapshot's list from
 * GET /api/v1/runs/{id} united with `run.progress` events. A new attempt starts it over.
 */
export class RewardSeries {
  constructor(runId) {
    this.runId = runId;
    this.rest = [];
    this.live = new Map(); // episode index -> { reward, seq }
    this.restartedAt = 0;
  }

  progress(episode, reward, seq) {
    if (!Number.isInteger(episode) || episode < 1 || typeof reward !== "number") return;
    this.live.set(episode - 1, { reward, seq });
  }

  // A new attempt deletes the earlier attempt's episodes on the server.
  restart(seq) {
    this.rest = [];
    this.live.clear();
    this.restartedAt = seq;
  }

  applySnapshot(rewards, asked) {
    if (this.restartedAt > asked) return; // it shows an attempt that no longer counts
    this.rest = rewards.slice();
    for (const [index, stamped] of this.live) if (stamped.seq <= asked) this.live.delete(index);
  }

  /** Rewards by episode; `null` where an episode is not known (yet). */
  values() {
    let length = this.rest.length;
    for (const index of this.live.keys()) length = Math.max(length, index + 1);
    const values = new Array(length).fill(null);
    this.rest.forEach((reward, index) => (values[index] = reward));
    for (const [index, stamped] of this.live) values[index] = stamped.reward;
    return values;
  }
}

/**
 * Loads a snapshot from REST and applies it, for a channel the page must (re)load. Requests may
 * overlap (a reset while the first load is still out): a snapshot is applied only if no snapshot
 * requested after it has been applied already. A load that fails is tried again, with growing
 * delays, until it succeeds or a newer one is requested — a lost reload would leave the page
 * wrong until the next one.
 */
export class Reloader {
  /**
   * @param {() => Promise<any>} fetchSnapshot   the REST requests
   * @param {(snapshot: any, asked: number) => void} apply
   * @param {{onError?: (error: Error) => void}} [options]
   */
  constructor(fetchSnapshot, apply, { onError = () => {} } = {}) {
    this.fetchSnapshot = fetchSnapshot;
    this.apply = apply;
    this.onError = onError;
    this.requested = 0;
    this.applied = 0;
    this.timer = null;
    this.cancelled = false;
  }

  request() {
    clearTimeout(this.timer);
    this.requested += 1;
    this.load(this.requested, 0);
  }

  cancel() {
    this.cancelled = true;
    clearTimeout(this.timer);
  }

  async load(generation, failures) {
    const asked = currentSequence();
    let snapshot;
    try {
      snapshot = await this.fetchSnapshot();
    } catch (error) {
      if (this.cancelled || generation !== this.requested || error.status === 401) return;
      this.onError(error);
      const delay = Math.min(15_000, 1_000 * 2 ** failures);
      this.timer = setTimeout(() => this.load(generation, failures + 1), delay);
      return;
    }
    if (this.cancelled || generation <= this.applied) return;
    this.applied = generation;
    this.apply(snapshot, asked);
  }
}

/** Whether a live event announces stored evaluations: one (`evaluation.created`) or a batch's (`evaluations.created`). */
export function isEvaluationEvent(type) {
  return type === "evaluation.created" || type === "evaluations.created";
}

/**
 * The evaluations an `evaluation.created` or `evaluations.created` frame announces, in order, as objects.
 * A batch's event gives its agent once and each evaluation as a row of `columns` (docs/websocket.md).
 */
export function createdEvaluations(frame) {
  if (frame.event !== "evaluations.created") return [frame.data];
  const { agent_id: agentId, columns, rows } = frame.data;
  return rows.map((row) => {
    const evaluation = { agent_id: agentId };
    columns.forEach((name, index) => {
      evaluation[name] = row[index];
    });
    return evaluation;
  });
}
