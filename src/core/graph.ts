/** Dependency graph checks: cycles and topological order. @module */

/**
 * Finds one cycle in a graph given as node -> dependencies, or returns undefined.
 * The cycle is returned as a path that starts and ends at the same node (`a -> b -> a`),
 * following dependency edges.
 */
export function findCycle(
  nodes: readonly string[],
  depsOf: (id: string) => readonly string[],
): string[] | undefined {
  const WHITE = 0, GREY = 1, BLACK = 2;
  const color = new Map<string, number>(nodes.map((n) => [n, WHITE]));
  const known = new Set(nodes);
  for (const start of nodes) {
    if (color.get(start) !== WHITE) continue;
    // iterative DFS so that deep chains (10,000 tasks) cannot overflow the stack
    const stack: { node: string; next: number }[] = [{ node: start, next: 0 }];
    const path: string[] = [start];
    color.set(start, GREY);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const deps = depsOf(top.node).filter((d) => known.has(d));
      if (top.next < deps.length) {
        const dep = deps[top.next++]!;
        const c = color.get(dep);
        if (c === GREY) {
          const from = path.indexOf(dep);
          return [...path.slice(from), dep];
        }
        if (c === WHITE) {
          color.set(dep, GREY);
          stack.push({ node: dep, next: 0 });
          path.push(dep);
        }
      } else {
        color.set(top.node, BLACK);
        stack.pop();
        path.pop();
      }
    }
  }
  return undefined;
}

/** Kahn's order: dependencies before dependents, file order among equals. Assumes no cycle. */
export function topologicalOrder(
  nodes: readonly string[],
  depsOf: (id: string) => readonly string[],
): string[] {
  const indegree = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const n of nodes) {
    indegree.set(n, 0);
    dependents.set(n, []);
  }
  for (const n of nodes) {
    for (const d of new Set(depsOf(n))) {
      if (!indegree.has(d)) continue;
      indegree.set(n, indegree.get(n)! + 1);
      dependents.get(d)!.push(n);
    }
  }
  const out: string[] = [];
  const queue = nodes.filter((n) => indegree.get(n) === 0);
  for (let i = 0; i < queue.length; i++) {
    const n = queue[i]!;
    out.push(n);
    for (const m of dependents.get(n)!) {
      const k = indegree.get(m)! - 1;
      indegree.set(m, k);
      if (k === 0) queue.push(m);
    }
  }
  return out;
}
