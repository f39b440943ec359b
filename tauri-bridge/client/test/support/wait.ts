/** Waiting on conditions with a deadline (never a fixed sleep), and process facts. */

import { readFileSync, readdirSync } from "node:fs";

export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs: number; what: string; intervalMs?: number },
): Promise<NonNullable<T>> {
  const deadline = performance.now() + options.timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await condition();
      if (last) return last as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

/** Resolve with the first value `subscribe` delivers, or reject after `timeoutMs`. */
export function nextEvent<T>(
  subscribe: (listener: (value: T) => void) => () => void,
  options: { timeoutMs: number; what: string },
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}`));
    }, options.timeoutMs);
    const off = subscribe((value) => {
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** The process is gone (or a zombie nobody reaped yet: it runs no code). */
export function isGone(pid: number): boolean {
  if (process.platform === "linux") {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
    } catch {
      return true;
    }
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** Every live descendant of `pid` (Linux /proc; empty elsewhere). */
export function descendants(pid: number): number[] {
  if (process.platform !== "linux") return [];
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z") parents.set(Number(entry), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const current = queue.shift() as number;
    for (const [child, parent] of parents) {
      if (parent === current) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}
