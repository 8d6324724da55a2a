// Live collections: a list followed by a watch (newline-delimited JSON events), kept up to date
// until released. A watch that ends is resumed from the last resourceVersion seen; an in-stream
// 410 Expired makes it list again. Nothing is polled.
//
// A browser opens at most six HTTP/1.1 connections to one server and every watch holds one, so
// collections are shared: views acquire them by path and release them when they go away.

import { ApiError, authHeaders, errorFrom, get } from './api.js';

const key = (obj) => `${obj.metadata.namespace || ''}/${obj.metadata.name}`;
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

/// The objects of one collection path (with optional selectors), as a Map from "ns/name".
export class LiveCollection {
  constructor(path, params = {}) {
    this.path = path;
    this.params = params;
    this.items = new Map();
    this.synced = false;
    this.error = null;
    this.listeners = new Set();
    this.abort = new AbortController();
    this.resourceVersion = null;
    this.notifyQueued = false;
  }

  /// Calls `fn(collection)` now (if there is anything to show) and on every change. Returns the
  /// unsubscribe function.
  subscribe(fn) {
    this.listeners.add(fn);
    // Called on the next microtask, so the subscriber has finished setting itself up.
    if (this.synced || this.error) queueMicrotask(() => this.listeners.has(fn) && fn(this));
    return () => this.listeners.delete(fn);
  }

  /// The objects, sorted by namespace then name.
  list() {
    return [...this.items.values()].sort((a, b) => key(a).localeCompare(key(b)));
  }

  /// One object by namespace and name.
  get(namespace, name) {
    return this.items.get(`${namespace || ''}/${name}`);
  }

  notify() {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const fn of [...this.listeners]) fn(this);
    });
  }

  url(extra) {
    const query = new URLSearchParams({ ...this.params, ...extra });
    return `${this.path}?${query}`;
  }

  async relist() {
    const list = await get(this.url({}), { signal: this.abort.signal });
    this.items = new Map((list.items || []).map((o) => [key(o), o]));
    this.resourceVersion = list.metadata?.resourceVersion || '0';
    this.synced = true;
    this.error = null;
    this.notify();
  }

  async watch() {
    const url = this.url({ watch: 'true', resourceVersion: this.resourceVersion, allowWatchBookmarks: 'true' });
    const response = await fetch(url, { headers: authHeaders(), signal: this.abort.signal, cache: 'no-store' });
    if (!response.ok) throw await errorFrom(response);
    if (this.error) {
      this.error = null;
      this.notify();
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) this.apply(JSON.parse(line));
      }
    }
  }

  apply(event) {
    const obj = event.object;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.items.set(key(obj), obj);
        this.resourceVersion = obj.metadata.resourceVersion;
        this.notify();
        break;
      case 'DELETED':
        this.items.delete(key(obj));
        this.resourceVersion = obj.metadata.resourceVersion;
        this.notify();
        break;
      case 'BOOKMARK':
        this.resourceVersion = obj.metadata.resourceVersion;
        break;
      case 'ERROR':
        if (obj.code === 410) {
          this.resourceVersion = null; // too old: list again
          throw new ExpiredError();
        }
        throw new ApiError(obj.code || 500, obj);
      default:
        break;
    }
  }

  /// Runs until stopped: list, watch, and resume the watch whenever it ends.
  async run() {
    let backoff = 500;
    while (!this.abort.signal.aborted) {
      try {
        if (this.resourceVersion === null) await this.relist();
        const started = Date.now();
        await this.watch();
        // A watch that the server ends at once (it is shutting down) is retried after a pause.
        if (Date.now() - started < 1000) {
          await sleep(backoff, this.abort.signal);
          backoff = Math.min(backoff * 2, 10000);
        } else {
          backoff = 500;
        }
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (err instanceof ExpiredError) continue;
        this.error = err;
        this.notify();
        // Wait before reconnecting, longer each time, so a stopped server is not hammered.
        await sleep(backoff, this.abort.signal);
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  }

  stop() {
    this.abort.abort();
    this.listeners.clear();
  }
}

class ExpiredError extends Error {}

const shared = new Map();

/// Acquires the shared live collection for `path` (+ `params`); call `release()` when done.
export function acquire(path, params = {}) {
  const id = `${path}?${new URLSearchParams(params)}`;
  let entry = shared.get(id);
  if (!entry) {
    entry = { collection: new LiveCollection(path, params), refs: 0 };
    shared.set(id, entry);
    entry.collection.run();
  }
  entry.refs += 1;
  let released = false;
  return {
    collection: entry.collection,
    release() {
      if (released) return;
      released = true;
      entry.refs -= 1;
      if (entry.refs === 0) {
        if (shared.get(id) === entry) shared.delete(id);
        entry.collection.stop();
      }
    },
  };
}

/// Stops every live collection (on log out).
export function releaseAll() {
  for (const entry of shared.values()) entry.collection.stop();
  shared.clear();
}

/// A bag of acquisitions and subscriptions that a view or dialog disposes of at once.
export class Scope {
  constructor() {
    this.cleanups = [];
  }

  /// Acquires a collection and subscribes `fn` to it for the scope's lifetime.
  watch(path, params, fn) {
    const handle = acquire(path, params);
    this.cleanups.push(() => handle.release());
    if (fn) this.cleanups.push(handle.collection.subscribe(fn));
    return handle.collection;
  }

  add(cleanup) {
    this.cleanups.push(cleanup);
  }

  dispose() {
    for (const cleanup of this.cleanups.splice(0).reverse()) cleanup();
  }
}
